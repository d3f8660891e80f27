"""Name → object registries. Every list the CLI shows comes from one of these, never from a hard-coded list."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from lab.errors import LabError, did_you_mean

T = TypeVar("T")

# Packages that register tasks, agents, models and envs when imported.
PLUGIN_PACKAGES = ("envs", "agents", "vision", "nlp")


class Registry(Generic[T]):
    """A named collection: `@REG.register("name")` to add, `REG.get("name")` to look up with a helpful error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str | None = None) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            doc = help if help is not None else (getattr(obj, "__doc__", None) or "")
            self._help[name] = doc.strip().splitlines()[0] if doc.strip() else ""
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self:
            raise LabError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}")
        return self._items[name]

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._items)

    def describe(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        load_plugins(until=lambda: name in self._items)
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def load_plugins(until: Callable[[], bool] | None = None) -> None:
    """Import the lab's packages in order so that their registrations run; with `until`, stop as soon as it
    holds. A DQN run then never imports the NLP stack (tokenizers, sacrebleu) nor the vision models."""
    for package in PLUGIN_PACKAGES:
        if until is not None and until():
            return
        importlib.import_module(package)  # a dictionary lookup once the package is imported


TASKS: Registry[Any] = Registry("task")
AGENTS: Registry[Any] = Registry("agent")
MODELS: Registry[Any] = Registry("model")
