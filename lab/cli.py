"""The `lab` command line: train, eval, config, list, plot, and the commands packages register."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from lab.errors import LabError

EPILOG = """examples:
  lab train configs/dqn/cartpole.yaml                 train DQN on CartPole-v1, evaluate, report
  lab train dqn/cartpole trainer.max_steps=20000 seed=3
  lab train --resume runs/cartpole-20261122-101500    continue a stopped or killed run
  lab eval runs/cartpole-20261122-101500 --episodes 20 --json
  lab config vision/digits optim.lr=3e-3               print the resolved config
  lab list                                             configs, tasks, agents, models, environments
  lab plot runs/cartpole-20261122-101500              learning curves to a PNG (several runs: overlaid)
  lab runs                                             every run: steps, best evaluation, finished or not
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser(plugin_commands: bool = True) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `lab` parser; `plugin_commands=False` leaves out the commands packages register, whose listing
    imports every package (what `lab --help` shows, but no built-in command needs)."""
    from lab.commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="lab", formatter_class=_formatter, epilog=EPILOG,
        description="gym lab: train Deep Q-Learning agents, NLP and vision models with one trainer.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        commands[name] = sub.add_parser(name, help=help, description=description, formatter_class=_formatter,
                                        prog=f"lab {name}")
        return commands[name]

    train = add("train", "train a model or agent from a YAML config (or resume a run)",
                "Train from a YAML config with optional dotted overrides, or resume a stopped run.\n"
                "Evaluates at the end and prints the result and where the run went.\n\n"
                "example:\n  lab train configs/dqn/cartpole.yaml trainer.max_steps=30000 --run-dir runs/cp\n"
                "  lab train --resume runs/cp")
    train.add_argument("config", nargs="?", help="config path or name under configs/ (e.g. dqn/cartpole)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=3e-4")
    train.add_argument("--run-dir", type=Path, help="where the run goes (default: runs/NAME-TIMESTAMP)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue this run from its latest checkpoint")
    train.add_argument("--json", action="store_true", help="print the result as JSON")

    ev = add("eval", "evaluate a trained run's checkpoint",
             "Evaluate a run: agents play N greedy episodes on a separate env; supervised tasks score the test "
             "split.\n\nexample:\n  lab eval runs/cp --episodes 20 --json")
    ev.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    ev.add_argument("--episodes", type=int, help="episodes for agents (default: trainer.eval_episodes)")
    ev.add_argument("--checkpoint", default="best", help="best (default), latest or a step_… directory name")
    ev.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="override the run's device")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")

    cfg = add("config", "print a resolved config (YAML + overrides, validated)",
              "Validate a config with overrides and print every key with its value, defaults included.\n\n"
              "example:\n  lab config dqn/cartpole optim.lr=1e-3")
    cfg.add_argument("config")
    cfg.add_argument("overrides", nargs="*", metavar="key=value")
    cfg.add_argument("--json", action="store_true")

    ls = add("list", "list configs, tasks, agents, models, environments and commands",
             "List what the lab's registries hold.\n\nexample:\n  lab list models --json")
    ls.add_argument("what", nargs="?", choices=["configs", "tasks", "agents", "models", "envs", "commands"])
    ls.add_argument("--json", action="store_true")

    pl = add("plot", "draw learning curves of one run, or of several overlaid, to a PNG",
             "Plot every train/ and eval/ metric of a run (eval std as a band). Given several runs, overlay them\n"
             "panel by panel, one colour a run: seeds, configs, DQN against PQN.\n\n"
             "examples:\n"
             "  lab plot runs/cp --out curves.png\n"
             "  lab plot runs/pong-dqn runs/pong-pqn --metric eval/mean_return --x time\n"
             "  lab plot runs/cp-seed* --metric 'train/*' --smooth 0.9")
    pl.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    pl.add_argument("--out", type=Path,
                    help="PNG path (default: RUN_DIR/plots/curves.png; several runs: compare.png beside them)")
    pl.add_argument("--metric", action="append", metavar="KEY",
                    help="draw only this metric; a glob such as 'eval/*' works; repeat for more (default: all)")
    pl.add_argument("--x", choices=["step", "time"], default="step",
                    help="x axis: env/optimizer steps, or training time in minutes (default: step)")
    pl.add_argument("--smooth", type=float, default=0.0, metavar="W",
                    help="exponential moving average weight in [0, 1), as TensorBoard's (default: 0, raw)")
    pl.add_argument("--json", action="store_true", help="print the PNG path and the metrics drawn as JSON")

    rs = add("runs", "list runs: task, steps, best evaluation, finished or not",
             "List the run directories under a folder (default: runs/), oldest first: task, config, steps done\n"
             "of max_steps, the best evaluation (what lab eval loads), and whether the run finished, stopped\n"
             "early, is training now (a process holds it) or is unfinished (stopped or killed: resume it), with\n"
             "the age of its last log line.\n\n"
             "examples:\n  lab runs\n  lab runs experiments/ --json")
    rs.add_argument("root", nargs="?", type=Path, default=Path("runs"), metavar="DIR")
    rs.add_argument("--json", action="store_true", help="print the rows as a JSON list")

    for name in COMMANDS.names() if plugin_commands else []:
        command = COMMANDS.get(name)
        command.add_arguments(add(name, command.help, command.description))
    return parser, commands


# --- commands ----------------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    import os

    from lab.config import load_config
    from lab.runs import create_run_dir, default_run_dir, discard_new_run_dir, training_lock

    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 owns the run dir
    if args.resume is not None and args.run_dir is not None:
        raise LabError("use either --resume RUN_DIR or --run-dir DIR, not both")
    if args.resume is None and args.config is None:
        raise LabError("give a config to train (e.g. lab train configs/dqn/cartpole.yaml) or --resume RUN_DIR")
    with contextlib.ExitStack() as held:  # the run's training lock, until this command ends
        new_dir_existed: bool | None = None  # a new run made here: whether its dir existed (empty) before
        if args.resume is not None:
            run_dir = args.resume
            overrides = ([args.config] if args.config else []) + args.overrides
            config, info, resume_from = _open_resumed_run(run_dir, overrides, held if is_main else None)
        else:
            config = load_config(args.config, args.overrides)
            run_dir = args.run_dir or default_run_dir(config, args.config)
            if is_main:
                new_dir_existed = run_dir.exists()  # (it is empty if so: create_run_dir refuses a dir with files)
                info = create_run_dir(run_dir, config, args.config)
                try:
                    held.enter_context(training_lock(run_dir))
                except BaseException:
                    discard_new_run_dir(run_dir, existed=new_dir_existed)
                    raise
            else:  # torchrun: rank 0 creates the dir; the others share its id
                info = {"run_id": run_dir.name}
            resume_from = None
        return _train(config, run_dir, info, resume_from, new_dir_existed, args.json)


def _open_resumed_run(run_dir: Path, overrides: list[str],
                      held: contextlib.ExitStack | None) -> tuple[Any, dict[str, Any], Path | None]:
    """The config, run info and checkpoint to go on from. With `held` (the process that owns the run), the
    run's training lock is taken before anything in it changes, and notes are printed."""
    from lab.checkpoint import find_checkpoint, has_checkpoint, read_checkpoint_step
    from lab.runs import open_run, read_result, restart_run, save_resumed_config, training_lock

    config, info = open_run(run_dir, overrides)
    if held is not None:
        held.enter_context(training_lock(run_dir))
    if has_checkpoint(run_dir):
        resume_from = find_checkpoint(run_dir, "latest")
        done = read_checkpoint_step(resume_from)
        result = read_result(run_dir)
        ended_here = result is not None and result.get("step") == done  # else: killed before it could end
        if ended_here and config.trainer.max_steps <= done:
            raise LabError(f"'{run_dir}' has trained {done:,} steps of its trainer.max_steps="
                           f"{config.trainer.max_steps:,} already; to train longer: lab train --resume {run_dir} "
                           f"trainer.max_steps=N (N > {done:,})")
        if ended_here and result.get("early_stop") and held is not None:
            print(f"note: this run stopped early at step {done:,} ({result['early_stop']}); the same rule may "
                  "stop it again at its next evaluation (trainer.stop_at, trainer.patience)", file=sys.stderr)
    else:  # stopped before it saved anything: nothing to lose, so train it from the start
        resume_from = None
        if held is not None:
            kept = restart_run(run_dir, info)
            print(f"note: '{run_dir}' has no checkpoint yet; training it from the start with its config"
                  + (f" (its old log is kept as {kept.name})" if kept else ""), file=sys.stderr)
    if overrides and held is not None:
        save_resumed_config(run_dir, config, info)
    return config, info, resume_from


def _train(config: Any, run_dir: Path, info: dict[str, Any], resume_from: Path | None,
           new_dir_existed: bool | None, json_output: bool) -> int:
    from lab.runs import discard_new_run_dir
    from lab.trainer import Trainer, TrainingInterrupted

    started = time.perf_counter()
    try:
        trainer = Trainer(config, run_dir, run_id=info["run_id"])
    except BaseException:  # bad input found while building the run (an unknown torso, say): no half-made run
        if new_dir_existed is not None:
            discard_new_run_dir(run_dir, existed=new_dir_existed)
        raise
    sync_hint = None
    try:
        result = trainer.fit(resume_from=resume_from)
    except TrainingInterrupted as stop:
        print(f"{stop}; checkpoint written to {stop.checkpoint}\nresume with: lab train --resume {run_dir}",
              file=sys.stderr)
        return stop.exit_code
    if not trainer.dist.is_main:
        return 0
    sync_hint = _wandb_sync_hint(run_dir)
    result.update(run_dir=str(run_dir), seconds=round(time.perf_counter() - started, 2), wandb_sync=sync_hint)
    if json_output:
        print(json.dumps(result, indent=2))
        return 0
    print(f"done: {result['step']:,} steps in {result['seconds']:.1f} s")
    print("final eval: " + _format_eval(result["eval"]))
    if result["best_metric"] and result["best"] is not None:
        print(f"best: {result['best_metric']} = {result['best']:.4g} at step {result['best_step']:,} "
              "(checkpoints/best.json; what lab eval loads by default)")
    print(f"run: {run_dir}  (config.yaml, metrics.jsonl, checkpoints/)")
    if sync_hint:
        print(f"W&B: logged offline; upload later with: {sync_hint}")
    print(f"next: lab eval {run_dir} --json | lab plot {run_dir}")
    return 0


def _wandb_sync_hint(run_dir: Path) -> str | None:
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    return f"wandb sync {runs[-1]}" if runs else None


def _format_eval(metrics: dict[str, float]) -> str:
    names = {k.split("/", 1)[-1]: v for k, v in metrics.items()}
    if "mean_return" in names:
        text = f"mean return {names['mean_return']:.2f} ± {names.get('std_return', 0.0):.2f}"
        if "episodes" in names:
            text += f" over {int(names['episodes'])} episodes"
        return text
    return ", ".join(f"{k} {v:.4g}" for k, v in names.items())


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from lab.devices import autocast
    from lab.runs import load_trained_task, open_run

    if args.episodes is not None and args.episodes < 1:
        raise LabError(f"--episodes must be at least 1, got {args.episodes}")
    if args.episodes is not None:
        saved, _ = open_run(args.run_dir)  # checked before any weights are loaded
        if not hasattr(saved, "env"):
            raise LabError(f"--episodes counts an agent's games; a {saved.task} run is scored on its data "
                           "splits: drop --episodes")
    task, config, path = load_trained_task(args.run_dir, args.checkpoint, args.device)
    episodes = args.episodes or config.trainer.eval_episodes
    with torch.no_grad(), autocast(task.device, bool(getattr(getattr(config, "model", None), "bf16", False))):
        metrics = task.evaluate(episodes)
    details = task.evaluation_details()
    task.close()
    metrics = {k: (int(v) if k == "episodes" else float(v)) for k, v in metrics.items()}
    if args.json:
        print(json.dumps({**metrics, **details, "checkpoint": str(path)}))
    else:
        print(f"{args.run_dir} ({path.name}): {_format_eval(metrics)}")
        for key, value in details.items():
            print(f"  {key}: {value}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from lab.config import config_to_dict, dump_yaml, load_config

    data = config_to_dict(load_config(args.config, args.overrides))
    print(json.dumps(data, indent=2) if args.json else dump_yaml(data), end="")
    if args.json:
        print()
    return 0


def registry_listing() -> dict[str, list[dict[str, str]]]:
    import gymnasium as gym

    from lab.commands import COMMANDS
    from lab.config import available_configs
    from lab.registry import AGENTS, MODELS, TASKS

    def entries(registry: Any) -> list[dict[str, str]]:
        return [{"name": n, "help": registry.describe(n)} for n in registry.names()]

    envs = sorted(gym.registry)
    return {
        "configs": [{"name": n, "help": ""} for n in available_configs()],
        "tasks": entries(TASKS),
        "agents": entries(AGENTS),
        "models": entries(MODELS),
        "envs": [{"name": n, "help": ""} for n in envs],
        "commands": entries(COMMANDS),
    }


def cmd_list(args: argparse.Namespace) -> int:
    listing = registry_listing()
    if args.what:
        listing = {args.what: listing[args.what]}
    if args.json:
        print(json.dumps({k: [e["name"] for e in v] for k, v in listing.items()}, indent=2))
        return 0
    for section, items in listing.items():
        shown = items
        if section == "envs" and args.what != "envs":  # Atari alone has hundreds: summarise unless asked
            atari = [e for e in items if e["name"].startswith("ALE/")]
            shown = [e for e in items if not e["name"].startswith("ALE/")]
            if atari:
                shown = shown + [{"name": f"ALE/… ({len(atari)} Atari games: lab list envs)", "help": ""}]
        print(f"{section} ({len(items)}):")
        for item in shown:
            print(f"  {item['name']:<32} {item['help']}".rstrip())
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from lab.plotting import plot_runs
    from lab.runs import open_run

    for run_dir in args.run_dirs:
        open_run(run_dir)
    png, metrics = plot_runs(args.run_dirs, args.out, args.metric, args.x, args.smooth)
    if args.json:
        print(json.dumps({"png": str(png), "runs": [str(r) for r in args.run_dirs], "metrics": metrics}))
    else:
        print(png)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from lab.runs import list_runs

    rows = list_runs(args.root)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs in {args.root}/ yet: lab train CONFIG makes one")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("run", "task", "config", "steps", "best", "status", "last log"):
        table.add_column(column, justify="right" if column in ("steps", "last log") else "left", no_wrap=True)
    for row in rows:
        steps = f"{row['step'] or 0:,}" + (f"/{row['max_steps']:,}" if isinstance(row["max_steps"], int) else "")
        best = (f"{str(row['best_metric']).split('/')[-1]} {row['best']:.4g} @ {row['best_step'] or 0:,}"
                if isinstance(row["best"], int | float) else "")
        status = row["status"]  # the early stop's reason is in --json
        table.add_row(Path(row["run"]).name, row["task"] or "", row["config"] or "", steps, best, status,
                      _age(row["last_log_s"]))
    console = Console()
    Console(width=None if console.is_terminal else 200).print(table)  # piped: whole names, no wrapping
    if any(row["status"] == "unfinished" for row in rows):
        print("unfinished: stopped or killed; go on with lab train --resume RUN_DIR; compare: lab plot RUN_DIR …")
    return 0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


BUILTIN = {"train": cmd_train, "eval": cmd_eval, "config": cmd_config, "list": cmd_list, "plot": cmd_plot,
           "runs": cmd_runs}


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        parser, commands = build_parser(plugin_commands=not (argv and argv[0] in BUILTIN))
        if argv and argv[0] in commands:
            # Each command parses its own words, positionals and options in any order
            # (`lab train CFG --run-dir D a.b=1`, `lab translate RUN --beam 5 "text"`).
            args = commands[argv[0]].parse_intermixed_args(argv[1:])
            args.command = argv[0]
        else:
            args = parser.parse_args(argv)
        if args.command in BUILTIN:
            return BUILTIN[args.command](args)
        from lab.commands import COMMANDS

        return COMMANDS.get(args.command).run(args)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())
