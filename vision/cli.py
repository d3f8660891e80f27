"""`lab summary MODEL_NAME|CONFIG [--input C×H×W] [--json]`: the per-layer table of a backbone."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from torch import nn

from lab.commands import Command, register_command
from lab.errors import LabError
from vision.registry import backbone_from_config, create_backbone
from vision.summary import parse_input_shape, summarize


def _is_config(target: str) -> bool:
    return target.endswith((".yaml", ".yml")) or Path(target).is_file()


# Keys of a config's `model:` section that describe the network; the rest (bf16, compile, init_from, …) are
# training switches. `options:` holds the backbone's keyword arguments.
NETWORK_KEYS = ("name", "layers", "in_chans", "num_classes", "input_size")


def _model_spec(path: Path) -> dict[str, Any]:
    """The backbone spec of a config file: model.name or model.layers, sizes, and model.options merged in."""
    if not path.is_file():
        raise LabError(f"config file {str(path)!r} not found")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise LabError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        raise LabError(f"{path} has no `model:` section naming a backbone")
    options = model.get("options") or {}
    if not isinstance(options, dict):
        raise LabError(f"{path}: model.options must be a mapping of backbone options, got {options!r}")
    return {**options, **{key: model[key] for key in NETWORK_KEYS if model.get(key) is not None}}


def build_model(target: str, input_shape: tuple[int, int, int] | None) -> tuple[nn.Module, str]:
    """The model a backbone name or config path describes, sized for `input_shape` when given; and its label."""
    overrides: dict[str, Any] = {}
    if input_shape is not None:
        overrides = {"in_chans": input_shape[0], "input_size": list(input_shape[1:])}
    if _is_config(target):
        spec = _model_spec(Path(target))
        model = backbone_from_config({**spec, **overrides})
        return model, f"{spec.get('name', 'layer list')} ({target})"
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
        Console().print(summary_table(summary, f"{label} · input {'×'.join(map(str, shape))}"))
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
