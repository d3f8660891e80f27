"""CLI subcommands contributed by the lab's packages (`summary` from vision, `play` from envs, …).

A package registers a `Command`; `lab/cli.py` adds every registered command to the `lab` parser.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from lab.registry import Registry


@dataclass(frozen=True)
class Command:
    name: str
    help: str  # one line, shown in `lab --help`
    description: str  # shown in `lab NAME --help`; end with an example
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]  # returns the exit code; raise LabError for bad input


COMMANDS: Registry[Command] = Registry("command")


def register_command(command: Command) -> Command:
    COMMANDS.register(command.name, help=command.help)(command)
    return command
