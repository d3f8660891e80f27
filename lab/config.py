"""Configs: YAML files plus dotted `key=value` overrides, validated into typed pydantic objects.

Every task's config subclasses `RunConfig`, which holds the universal keys. Validation errors become one
`LabError` line naming the key path, the value and the nearest valid choices.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab.errors import LabError, did_you_mean

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's numbers: `1e6` and `3e-4` are floats, as people write step counts and learning
    rates (PyYAML's YAML 1.1 rules need a dot, so `max_steps: 1e6` was a string and an int key refused it)."""


class _Dumper(yaml.SafeDumper):
    """Quotes the strings `_Loader` would read as numbers (a tag "1e-3"), so a saved config reads back the same."""


_E_NOTATION = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
for _yaml_class in (_Loader, _Dumper):
    _yaml_class.add_implicit_resolver("tag:yaml.org,2002:float", _E_NOTATION, list("-+.0123456789"))


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelSwitches(Section):
    """Per-model switches every task's `model:` section inherits."""

    bf16: bool = Field(False, description="bf16 autocast on CUDA (ignored on CPU)")
    compile: bool = Field(False, description="torch.compile the model")


class TrackingConfig(Section):
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "gym-lab"
    entity: str | None = None
    name: str | None = None
    tags: list[str] = []
    video_frames: int = Field(300, ge=0, description="frames of the agent's final eval video for W&B (0: none)")


class OptimConfig(Section):
    name: Literal["adam", "adamw", "radam", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    alpha: float = Field(0.99, gt=0, lt=1, description="RMSprop smoothing constant")
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm")
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0, description="linear LR warm-up, in trainer steps")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final LR as a fraction of lr (linear, cosine)")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "OptimConfig":
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov=true needs optim.name=sgd and optim.momentum > 0 (e.g. 0.9)")
        return self


class TrainerConfig(Section):
    max_steps: int = Field(10_000, gt=0, description="env steps for agents, optimizer steps for supervised tasks")
    eval_every: int | None = Field(None, gt=0, description="evaluate every N steps (None: only at the end)")
    eval_episodes: int = Field(10, gt=0, description="episodes per evaluation (agents)")
    checkpoint_every: int | None = Field(None, gt=0, description="checkpoint every N steps (None: only at the end)")
    log_every: int = Field(1_000, gt=0)
    keep_last: int = Field(2, ge=1, description="step checkpoints kept besides the best")
    best_metric: str | None = Field(None, description="eval metric that picks the best checkpoint (task default)")
    best_mode: Literal["max", "min"] | None = None
    best_checkpoint: Literal["full", "weights"] | None = Field(
        None, description="full: best checkpoints can be resumed; weights: they hold the model alone, for tasks "
        "whose training state is large, e.g. a replay memory (task default)")
    patience: int | None = Field(None, gt=0, description="early stop after N evaluations without improvement")
    stop_at: float | None = Field(None, description="early stop once best_metric reaches this value")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms")
    cpu_threads: int | None = Field(None, gt=0, description="torch intra-op threads (1 is fastest for tiny models)")
    progress: bool = True


class RunConfig(Section):
    """Keys every task accepts. A task's Config adds its own sections (env, agent, data, model, …)."""

    task: str
    seed: int = Field(0, ge=0, description="seeds Python, NumPy, torch and the envs (Gymnasium takes no negative seed)")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    tracking: TrackingConfig = TrackingConfig()
    trainer: TrainerConfig = TrainerConfig()
    optim: OptimConfig = OptimConfig()


# --- files and overrides -------------------------------------------------------------------------------------


def available_configs() -> list[str]:
    """Config names relative to configs/, without .yaml (e.g. 'dqn/cartpole')."""
    if not CONFIG_DIR.is_dir():
        return []
    return sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml"))


def resolve_config_path(name: str | Path) -> Path:
    """A path as given, or a name under configs/ ('dqn/cartpole' or 'dqn/cartpole.yaml')."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / path, CONFIG_DIR / path.with_suffix(".yaml")):
        if candidate.is_file():
            try:  # messages then name configs/dqn/cartpole.yaml, as the user sees the tree from the repo root
                return candidate.relative_to(Path.cwd())
            except (ValueError, OSError):
                return candidate
    raise LabError(f"config file '{name}' not found{did_you_mean(str(path.with_suffix('')), available_configs())}")


def read_yaml(path: Path, written_by_lab: bool = False) -> dict[str, Any]:
    """A YAML mapping. `written_by_lab` (a run's config.yaml): read by the YAML 1.1 rules that older runs were
    saved with, where an unquoted 1e-3 was a string; the floats the lab writes always have a dot (1.0e-03)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if written_by_lab else parse_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise LabError(f"cannot parse YAML in '{path}'{where}: {problem}") from None
    except UnicodeDecodeError as err:
        raise LabError(f"config '{path}' is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                       "save it as UTF-8") from None
    except OSError as err:
        raise LabError(f"cannot read config '{path}': {err.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LabError(f"config '{path}' must be a mapping of keys to values, not {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are parsed as YAML scalars/lists (`lr=3e-4`, `hidden=[64,64]`)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise LabError(f"override '{item}' must look like key=value, e.g. trainer.max_steps=5000")
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise LabError(f"override '{item}': '{'.'.join(parts[: depth + 1])}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(name: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply overrides, and validate it against its task's Config class."""
    path = resolve_config_path(name)
    data = apply_overrides(read_yaml(path), list(overrides or []))
    return validate_config(data, source=str(path))


def validate_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    from lab.registry import TASKS  # late: the registry imports the plugin packages

    task_name = data.get("task")
    if not isinstance(task_name, str):
        raise LabError(f"{source}: missing 'task' key (one of: {', '.join(TASKS.names())})")
    config_class = TASKS.get(task_name).Config
    try:
        return config_class.model_validate(data)
    except ValidationError as err:
        raise LabError(f"{source}: {describe_validation_error(err, config_class)}") from None


def describe_validation_error(err: ValidationError, root: type[BaseModel]) -> str:
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    path = ".".join(loc)
    if first["type"] == "extra_forbidden":
        fields = _fields_at(root, loc[:-1])
        hint = did_you_mean(loc[-1], fields) if fields else ""
        return f"unknown key '{path}'{hint}"
    if first["type"] == "missing":
        return f"missing key '{path}'"
    value = first.get("input")
    message = first["msg"]
    choices = (first.get("ctx") or {}).get("expected")
    if first["type"] == "literal_error" and choices and isinstance(value, str):
        options = [c.strip(" '\"") for c in str(choices).replace(" or ", ",").split(",")]
        close = difflib.get_close_matches(value, options, n=2, cutoff=0.5)
        if close:
            message += f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    if not loc:  # a check across keys: the whole config is its input, too long to repeat
        return message.removeprefix("Value error, ")
    return f"key '{path}' = {value!r}: {message}"


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """Field names of the nested section at `loc`, for did-you-mean hints."""
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def save_config(config: RunConfig, path: Path) -> None:
    from lab.checkpoint import atomic_write_text

    atomic_write_text(path, dump_yaml(config_to_dict(config)))
