"""`lab summary MODEL_NAME|CONFIG [--input C×H×W] [--json]`: the per-layer table of a backbone."""
from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from torch import nn

from lab.commands import Command, register_command
from lab.config import load_config, read_yaml, resolve_config_path
from lab.errors import LabError
from lab.registry import TASKS
from vision.classification import data_shape, model_spec
from vision.registry import BACKBONES, backbone_from_config, create_backbone
from vision.summary import parse_input_shape, summarize


# Keys of a model-only YAML's `model:` section that describe the network; the rest (bf16, compile, init_from, …)
# are training switches. `options:` holds the backbone's keyword arguments.
NETWORK_KEYS = ("name", "layers", "in_chans", "num_classes", "input_size")


def _config_path(target: str) -> Path | None:
    """The YAML a target names: a path, or a name under configs/ (vision/digits); None for a backbone name."""
    if target in BACKBONES and not target.endswith((".yaml", ".yml")):
        return None
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        return Path(target)
    try:
        return resolve_config_path(target)
    except LabError:
        return None  # not a config either: create_backbone names the nearest backbones


def _model_spec(path: Path) -> dict[str, Any]:
    """The backbone a YAML describes. A training config (a registered `task:`) gives the model its run builds,
    sized by its data; any other YAML gives model.name or model.layers, its sizes and model.options."""
    if not path.is_file():
        raise LabError(f"config file {str(path)!r} not found")
    config = read_yaml(path)
    task = config.get("task") if isinstance(config, dict) else None
    if isinstance(task, str) and task not in TASKS and difflib.get_close_matches(task, TASKS.names(), cutoff=0.8):
        TASKS.get(task)  # a misspelt task: its one-line error names the nearest
    if isinstance(task, str) and task in TASKS:
        run_config = load_config(path)
        if run_config.task != "image_classification":
            raise LabError(f"{path} trains a {run_config.task} task; lab summary reads image-classification configs "
                           "and backbone names (an agent's encoder: lab summary nature_cnn --input 4x84x84)")
        return model_spec(run_config.model, *data_shape(run_config.data))
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        raise LabError(f"{path} has no `model:` section naming a backbone")
    options = model.get("options") or {}
    if not isinstance(options, dict):
        raise LabError(f"{path}: model.options must be a mapping of backbone options, got {options!r}")
    return {**options, **{key: model[key] for key in NETWORK_KEYS if model.get(key) is not None}}


def build_model(target: str, input_shape: tuple[int, int, int] | None) -> tuple[nn.Module, str]:
    """The model a backbone name or config describes, sized for `input_shape` when given; and its label."""
    overrides: dict[str, Any] = {}
    if input_shape is not None:
        overrides = {"in_chans": input_shape[0], "input_size": list(input_shape[1:])}
    path = _config_path(target)
    if path is not None:
        spec = _model_spec(path)
        model = backbone_from_config({**spec, **overrides})
        return model, f"{spec.get('name') or 'layer list'} ({target})"
    return create_backbone(target, **overrides), target


def summary_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_footer=True)
    total = summary["total"]
    table.add_column("layer", footer="total")
    table.add_column("type")
    table.add_column("output", justify="right")
    table.add_column("neurons", justify="right", footer=f"{total['neurons']:,}")
    table.add_column("connections", justify="right", footer=f"{total['connections']:,}")
    table.add_column("params", justify="right", footer=f"{total['params']:,}")
    for row in summary["layers"]:
        table.add_row(
            row["name"],
            row["type"],
            "×".join(map(str, row["output_shape"])),
            f"{row['neurons']:,}" if row["neurons"] else "-",
            f"{row['connections']:,}" if row["connections"] else "-",
            f"{row['params']:,}" if row["params"] else "-",
        )
    return table


def run(args: argparse.Namespace) -> int:
    input_shape = parse_input_shape(args.input) if args.input else None
    model, label = build_model(args.model, input_shape)
    shape = input_shape or model.default_input_shape
    summary = summarize(model, shape)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        console = Console()
        # Piped output has no terminal width: keep layer names whole rather than cut at 80 columns.
        Console(width=max(console.width, 160) if not console.is_terminal else None).print(
            summary_table(summary, f"{label} · input {'×'.join(map(str, shape))}"))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL_NAME|CONFIG", help="a backbone name (see `lab list`) or a YAML config with `model:`"
    )
    parser.add_argument("--input", metavar="C×H×W", help="input shape such as 3x32x32 (default: the model's own)")
    parser.add_argument("--json", action="store_true", help='print {"layers": [...], "total": {...}} as JSON')


SUMMARY = register_command(
    Command(
        name="summary",
        help="per-layer table of a model: output shapes, neurons, connections, parameters",
        description=(
            "Runs one dummy input through a backbone and lists every layer with its output shape, neurons, "
            "connections and parameters, with totals. Connections count, for each output unit, the inputs it "
            "reads (biases excluded). Example: lab summary lenet5 --input 1x32x32"
        ),
        add_arguments=add_arguments,
        run=run,
    )
)
