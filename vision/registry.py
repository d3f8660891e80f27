"""One registry of backbones: `create_backbone(name, …)` and `list_backbones()`.

Each name fixes some constructor arguments of a backbone class (depth, stem, …); every other argument of the
class is an option the user may pass, e.g. `create_backbone("resnet18_cifar", num_classes=10, act="gelu")`.
Every backbone is also registered in `lab.registry.MODELS`, so `lab list` shows it.
"""
from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lab.errors import LabError, did_you_mean
from lab.registry import MODELS, Registry


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: its class and the constructor arguments its name fixes."""

    name: str
    cls: type[nn.Module]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def options(self) -> list[str]:
        """The keyword arguments a user may set for this backbone."""
        parameters = inspect.signature(self.cls).parameters
        return [p for p in parameters if p not in self.fixed]

    def __call__(self, **kwargs: Any) -> nn.Module:
        options = self.options()
        for key in kwargs:
            if key in self.fixed:
                fixed = f"{key}={self.fixed[key]!r}"
                raise LabError(f"backbone {self.name!r} fixes {fixed}; pick another backbone name to change it")
            if key not in options:
                raise LabError(f"backbone {self.name!r} has no option {key!r}{did_you_mean(key, options)}")
        return self.cls(**self.fixed, **kwargs)


BACKBONES: Registry[BackboneEntry] = Registry("backbone")


def register_backbone(name: str, cls: type[nn.Module], help: str, **fixed: Any) -> BackboneEntry:
    """Register `name` as `cls(**fixed, **user_options)` in BACKBONES and in lab's MODELS."""
    entry = BackboneEntry(name, cls, fixed)
    BACKBONES.register(name, help=help)(entry)
    MODELS.register(name, help=help)(entry)
    return entry


def create_backbone(name: str, in_chans: int | None = None, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered backbone; `in_chans`/`num_classes` left as None keep the backbone's defaults.

    `num_classes=0` gives a pure encoder whose forward returns pooled (pre-logit) features.
    """
    entry = BACKBONES.get(name)
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return entry(**kwargs)


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names, sorted, optionally filtered by a shell pattern such as "resnet*"."""
    return [name for name in BACKBONES.names() if fnmatch.fnmatch(name, pattern)]


def backbone_from_config(model: Mapping[str, Any]) -> nn.Module:
    """Build the backbone a config's `model:` section describes.

    `layers:` (a layer list, see vision/builder.py) wins over `name:`; every other key is passed as an option,
    e.g. {"name": "resnet18_cifar", "num_classes": 10, "act": "gelu"}.
    """
    options = dict(model)
    name = options.pop("name", None)
    layers = options.pop("layers", None)
    if layers is not None:
        from vision.builder import build_from_layers

        allowed = [p for p in inspect.signature(build_from_layers).parameters if p != "layers"]
        for key in options:
            if key not in allowed:
                raise LabError(f"a model with `layers:` has no option {key!r}{did_you_mean(key, allowed)}")
        return build_from_layers(layers, **options)
    if not isinstance(name, str):
        raise LabError("the model section needs `name:` (a backbone, see `lab list`) or `layers:` (a layer list)")
    return create_backbone(name, **options)
