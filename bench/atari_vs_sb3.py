"""Atari throughput and time-to-score: the lab's DQN and PQN against Stable-Baselines3's DQN, in one process.

Throughput. Each side trains in turn (sb3, then the lab learners) on the same machine. Its measured window opens
once it has made `--warmup-updates` gradient updates, so the warm-up before learning starts and torch.compile's
first compilations stay outside, and closes `--seconds` of wall clock later; steps/s and updates/s count that
window only. Evaluations are skipped in throughput runs: they measure training alone. Steps are agent steps (one
action of one game, 4 emulator frames) on both sides.
- sb3: `DQN("CnnPolicy")` on SB3's standard Atari stack, `make_atari_env` (AtariWrapper: no-op starts, frame
  skip 4 with max-pool, life loss as terminal, FIRE reset, 84×84 grey, clipped rewards) on ALE/<game>-v5 with
  frameskip 1 and no sticky actions, then `VecFrameStack(4)`; one env, RL-Zoo's Atari DQN hyperparameters except
  `learning_starts`, lowered from 100,000 to 1,000 so that the window measures learning.
- dqn, pqn: configs/{dqn,pqn}/<game>.yaml through `lab.trainer.Trainer` (no run dir, tracking disabled).

Time-to-score. Each lab learner trains from launch (the clock starts before the Trainer builds envs, networks
and compiles) with its config's eval cadence, for up to `--curve-minutes` of wall clock or until an evaluation
reaches the config's `trainer.stop_at` (18 on Pong). Every evaluation is recorded as (wall seconds from launch,
env steps, mean return); time spent in evaluations counts. The curves go to a PNG, and with `--curve-log` each
evaluation is also appended to a JSON-lines file the moment it ends, so a run cut off from outside keeps its curve.

    python bench/atari_vs_sb3.py                               # Pong: 120 s per side, 10-minute curves
    python bench/atari_vs_sb3.py --json --plot /tmp/pong.png   # one JSON object on stdout
    python bench/atari_vs_sb3.py --curve-minutes 0 --lab pqn   # throughput only, sb3 against PQN
    python bench/atari_vs_sb3.py --skip-throughput --lab pqn   # PQN's time-to-score curve only
    python bench/atari_vs_sb3.py --skip-throughput --lab pqn --curve-log evals.jsonl   # …each eval as it ends
    python bench/atari_vs_sb3.py --device cpu --seconds 20 --curve-minutes 0.5 \\
        --lab-override env.num_envs=4 --lab-override model.compile=false --lab-override dqn:agent.buffer_size=2000
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from bench.cartpole_vs_sb3 import finite_or_none  # noqa: E402
from bench.cartpole_vs_sb3 import machine as base_machine  # noqa: E402
from envs.atari import register_atari  # noqa: E402
from lab.config import RunConfig, load_config  # noqa: E402
from lab.devices import resolve_device  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.trainer import Trainer, time_limit  # noqa: E402

LEARNERS = ("dqn", "pqn")
TARGET_RATIO = 25.0  # lab steps/s over SB3's, the issue's throughput target
DEFAULT_PLOT = Path(__file__).resolve().parent / "results" / "atari_curve.png"
SEED = 1  # the lab's Atari configs use seed 1
SB3_TOTAL_STEPS = 10_000_000  # RL-Zoo's n_timesteps: sets SB3's ε schedule; the window stops the run long before

# RL Baselines3 Zoo, hyperparams/dqn.yml, "atari" (learning_starts lowered: see the module docstring).
SB3_HYPERPARAMS: dict[str, Any] = {
    "buffer_size": 100_000, "learning_rate": 1e-4, "batch_size": 32, "learning_starts": 1_000,
    "target_update_interval": 1_000, "train_freq": 4, "gradient_steps": 1, "exploration_fraction": 0.1,
    "exploration_final_eps": 0.01, "optimize_memory_usage": False,
}


class Window:
    """The measured stretch of a run: opens at the first observation with `warmup_updates` updates done and
    closes `seconds` later. `observe` is called after every training step. Create it before the side builds its
    envs and networks: `warmup_s` is the time from there to the window's opening."""

    def __init__(self, seconds: float, warmup_updates: int) -> None:
        self.seconds, self.warmup_updates = seconds, warmup_updates
        self.launched = time.perf_counter()
        self.start: tuple[float, int, int] | None = None  # (time, env steps, updates)
        self.last: tuple[float, int, int] | None = None

    def observe(self, steps: int, updates: int) -> bool:
        """Record the run's counters; True once the window has closed."""
        now = time.perf_counter()
        if self.start is None and updates >= self.warmup_updates:
            self.start = (now, steps, updates)
        self.last = (now, steps, updates)
        return self.start is not None and now - self.start[0] >= self.seconds

    def result(self) -> dict[str, Any]:
        """Rates over the window (NaN if it never opened: the run ended during warm-up)."""
        if self.start is None:
            return {"env_steps_per_s": math.nan, "updates_per_s": math.nan, "window_s": 0.0,
                    "window_env_steps": 0, "window_updates": 0, "warmup_s": math.nan}
        (t0, s0, u0), (t1, s1, u1) = self.start, self.last
        seconds = max(t1 - t0, 1e-9)
        return {"env_steps_per_s": (s1 - s0) / seconds, "updates_per_s": (u1 - u0) / seconds, "window_s": t1 - t0,
                "window_env_steps": s1 - s0, "window_updates": u1 - u0, "warmup_s": t0 - self.launched}


def env_id(game: str) -> str:
    return f"ALE/{game}-v5"


def split_overrides(overrides: list[str]) -> dict[str, list[str]]:
    """`KEY=VALUE` goes to every lab learner, `LEARNER:KEY=VALUE` (e.g. `dqn:agent.buffer_size=2000`) to one."""
    split: dict[str, list[str]] = {learner: [] for learner in LEARNERS}
    for override in overrides:
        learner, sep, rest = override.partition(":")
        if sep and learner in LEARNERS:
            split[learner].append(rest)
        else:
            for own in split.values():
                own.append(override)
    return split


def lab_config(learner: str, game: str, device: str, overrides: list[str]) -> RunConfig:
    base = [f"device={device}", "tracking.mode=disabled", "trainer.progress=false"]
    return load_config(f"{learner}/{game.lower()}", base + overrides)


def measure_lab(learner: str, game: str, seconds: float, device: str, overrides: list[str],
                warmup_updates: int) -> dict[str, Any]:
    """Steady-state training throughput of one lab learner through the Trainer."""
    window = Window(seconds, warmup_updates)
    config = lab_config(learner, game, device, overrides)
    trainer = Trainer(config, None)
    # Training only: an evaluation inside the window (or the closing one) would count as lost throughput.
    trainer.task.evaluate = lambda episodes=None: {"mean_return": math.nan}

    def stop_after_window(t: Trainer) -> None:
        if window.observe(t.step, t.updates):
            t.early_stop_reason = f"{seconds:g} s measured"  # the Trainer's clean exit, as trainer.stop_at
    trainer.callbacks.append(stop_after_window)
    trainer.fit()
    return {**window.result(), "env_steps": trainer.step, "updates": trainer.updates,
            "num_envs": config.env.num_envs, "batch_size": _batch_size(trainer), "device": str(trainer.device),
            "torch_threads": torch.get_num_threads()}


def _batch_size(trainer: Trainer) -> int:
    task = trainer.task
    return getattr(task, "minibatch_size", None) or task.cfg.batch_size  # PQN: a rollout's samples / minibatches


def measure_sb3(game: str, seconds: float, device: str, warmup_updates: int) -> dict[str, Any]:
    """Steady-state training throughput of SB3's DQN on its standard Atari stack."""
    import ale_py
    import gymnasium
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    window = Window(seconds, warmup_updates)
    gymnasium.register_envs(ale_py)
    # v5 defaults to frameskip 4 and sticky actions; AtariWrapper does the skipping, as on NoFrameskip-v4.
    env = make_atari_env(env_id(game), n_envs=1, seed=SEED,
                         env_kwargs={"frameskip": 1, "repeat_action_probability": 0.0})
    env = VecFrameStack(env, n_stack=4)
    model = DQN("CnnPolicy", env, seed=SEED, device=device, verbose=0, **SB3_HYPERPARAMS)

    class StopAfterWindow(BaseCallback):
        def _on_step(self) -> bool:  # after every env step; False ends model.learn
            # _n_updates: SB3's gradient-update count, the one it logs as train/n_updates
            return not window.observe(self.model.num_timesteps, self.model._n_updates)

    model.learn(SB3_TOTAL_STEPS, callback=StopAfterWindow())
    env.close()
    return {**window.result(), "env_steps": model.num_timesteps, "updates": model._n_updates, "num_envs": 1,
            "batch_size": SB3_HYPERPARAMS["batch_size"], "device": str(model.device),
            "torch_threads": torch.get_num_threads()}


def throughput(game: str, learners: list[str], seconds: float, device: str, overrides: dict[str, list[str]],
               warmup_updates: int) -> dict[str, Any]:
    """sb3 and each lab learner in turn (`overrides`: per learner), then lab/sb3 ratios of steps/s against
    TARGET_RATIO."""
    default_threads = torch.get_num_threads()  # a lab config may lower it (trainer.cpu_threads)
    report: dict[str, Any] = {}
    for side in ("sb3", *learners):
        torch.set_num_threads(default_threads)
        print(f"throughput: {side} for {seconds:g} s after {warmup_updates} updates", file=sys.stderr, flush=True)
        report[side] = measure_sb3(game, seconds, device, warmup_updates) if side == "sb3" else \
            measure_lab(side, game, seconds, device, overrides[side], warmup_updates)
        print(f"throughput: {side} {report[side]['env_steps_per_s']:,.0f} steps/s", file=sys.stderr, flush=True)
    torch.set_num_threads(default_threads)
    sb3_rate = report["sb3"]["env_steps_per_s"]
    report["ratios"] = {"target": TARGET_RATIO}
    for learner in learners:
        ratio = report[learner]["env_steps_per_s"] / sb3_rate if sb3_rate > 0 else math.nan
        report["ratios"][learner] = {"ratio": ratio, "met": bool(ratio >= TARGET_RATIO)}
    return report


def time_to_score(learner: str, game: str, minutes: float, device: str, overrides: list[str],
                  log: Path | None = None) -> dict[str, Any]:
    """Train from launch until an eval reaches trainer.stop_at or `minutes` pass; every eval is a curve point,
    appended to `log` (JSON lines) as soon as it is made."""
    launched = time.perf_counter()  # before the Trainer: envs, networks and compilation count
    config = lab_config(learner, game, device, overrides)
    target = config.trainer.stop_at
    trainer = Trainer(config, None)
    evaluate = trainer.task.evaluate
    evals: list[dict[str, float]] = []

    def recorded(episodes: int | None = None) -> dict[str, float]:
        metrics = evaluate(episodes)
        evals.append({"wall_s": time.perf_counter() - launched, "env_steps": trainer.step,
                      "mean_return": metrics["mean_return"]})
        if log is not None:
            with log.open("a") as lines:
                lines.write(json.dumps({"learner": learner, **evals[-1]}) + "\n")
        return metrics
    trainer.task.evaluate = recorded

    trainer.callbacks.append(time_limit(minutes * 60, f"--curve-minutes {minutes:g} reached", launched))
    result = trainer.fit()
    hit = next((e for e in evals if target is not None and e["mean_return"] >= target), None)
    return {"target": target, "time_to_target_s": hit["wall_s"] if hit else None,
            "steps_to_target": hit["env_steps"] if hit else None,
            "final_return": evals[-1]["mean_return"] if evals else math.nan,
            "wall_s": time.perf_counter() - launched, "env_steps": trainer.step, "stop": result["early_stop"],
            "evals": evals}


def plot_curves(curves: dict[str, dict[str, Any]], game: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for learner, curve in curves.items():
        ax.plot([e["wall_s"] / 60 for e in curve["evals"]], [e["mean_return"] for e in curve["evals"]],
                marker="o", label=learner)
    targets = {c["target"] for c in curves.values() if c["target"] is not None}
    for target in targets:
        ax.axhline(target, linestyle="--", color="grey", label=f"target {target:g}")
    ax.set_title(f"{env_id(game)}: eval return against wall clock")
    ax.set_xlim(left=0)
    ax.set_xlabel("wall-clock minutes from launch")
    ax.set_ylabel("eval mean return (full games, raw score)")
    ax.legend()
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def machine(device: str) -> dict[str, Any]:
    import ale_py

    info = base_machine() | {"ale_py": ale_py.__version__, "device": device}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def print_table(report: dict[str, Any], game: str) -> None:
    if report["throughput"]:
        print_throughput(report["throughput"], game)
    for learner, curve in report["curve"].items():
        if curve["target"] is None:
            reached = "no target (the config's trainer.stop_at is null)"
        elif curve["time_to_target_s"] is None:
            reached = f"eval ≥ {curve['target']:g} not reached"
        else:
            reached = f"eval ≥ {curve['target']:g} after {curve['time_to_target_s'] / 60:.1f} min " \
                      f"({curve['steps_to_target']:,} steps)"
        print(f"time-to-score {learner}: {reached}; final return {curve['final_return']:.1f} after "
              f"{curve['wall_s'] / 60:.1f} min, {curve['env_steps']:,} steps, {len(curve['evals'])} evals")
    m = report["machine"]
    print(f"machine: {m.get('gpu', m['cpu'])}, {m['usable_cpus']} usable CPUs, torch {m['torch']}, "
          f"SB3 {m['stable_baselines3']}, ale-py {m['ale_py']}; {report['date']}")
    for note in report["notes"]:
        print(f"note: {note}")


def print_throughput(tp: dict[str, Any], game: str) -> None:
    print(f"{env_id(game)} training throughput (agent steps/s over each side's window, after warm-up)")
    header = f"{'':6}{'steps/s':>12}{'updates/s':>11}{'window s':>10}{'envs':>6}{'batch':>7}{'device':>8}"
    print(header)
    print("-" * len(header))
    for side in ("sb3", *[s for s in LEARNERS if s in tp]):
        r = tp[side]
        print(f"{side:6}{r['env_steps_per_s']:>12,.0f}{r['updates_per_s']:>11,.1f}{r['window_s']:>10.1f}"
              f"{r['num_envs']:>6}{r['batch_size']:>7}{r['device']:>8}")
    for learner in LEARNERS:
        if learner in tp["ratios"]:
            ratio = tp["ratios"][learner]
            print(f"{learner}/sb3: {ratio['ratio']:.1f}x (target {TARGET_RATIO:g}x: "
                  f"{'met' if ratio['met'] else 'not met'})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="Pong", help="ALE game with configs/{dqn,pqn}/<game>.yaml")
    parser.add_argument("--seconds", type=float, default=120.0, help="measured window of each throughput run")
    parser.add_argument("--warmup-updates", type=int, default=100,
                        help="gradient updates before a throughput window opens (learning and compile started)")
    parser.add_argument("--lab", default="dqn,pqn", help="comma-separated lab learners")
    parser.add_argument("--device", default="auto", help="torch device for every side (auto, cpu, cuda)")
    parser.add_argument("--lab-override", action="append", default=[], metavar="[LEARNER:]KEY=VALUE",
                        help="config override for every lab learner, or one with a 'dqn:'/'pqn:' prefix")
    parser.add_argument("--skip-throughput", action="store_true", help="only the time-to-score curves")
    parser.add_argument("--curve-minutes", type=float, default=10.0, help="time-to-score budget; 0 skips it")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="PNG of the time-to-score curves")
    parser.add_argument("--curve-log", type=Path, metavar="JSONL",
                        help="append each evaluation of the curves to this file as it ends")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    args.lab = [learner for learner in args.lab.split(",") if learner]
    if not args.lab or any(learner not in LEARNERS for learner in args.lab):
        parser.error(f"--lab takes a comma-separated subset of {','.join(LEARNERS)}")
    if args.seconds <= 0 or args.curve_minutes < 0 or args.warmup_updates < 1:
        parser.error("--seconds must be > 0, --curve-minutes ≥ 0 and --warmup-updates ≥ 1")
    if args.skip_throughput and args.curve_minutes == 0:
        parser.error("--skip-throughput with --curve-minutes 0 leaves nothing to measure")
    return args


def check_inputs(args: argparse.Namespace, per_learner: dict[str, list[str]]) -> None:
    """Everything a run can get wrong, before any side spends its window: the device, the game, the configs and
    the overrides, down to building each learner (a GPU session is short; a typo must not surface after SB3's two
    minutes)."""
    resolve_device(args.device)
    register_atari()
    try:
        gym.spec(env_id(args.game))
    except gym.error.Error:
        raise LabError(f"--game {args.game}: no Atari game {env_id(args.game)} (names are capitalised: Pong, "
                       "Breakout)") from None
    for learner in args.lab:
        Trainer(lab_config(learner, args.game, args.device, per_learner[learner]), None).task.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    per_learner = split_overrides(args.lab_override)
    check_inputs(args, per_learner)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer's and SB3's lines; stdout keeps only the report
        tp = {} if args.skip_throughput else throughput(args.game, args.lab, args.seconds, args.device, per_learner,
                                                        args.warmup_updates)
        curves = {}
        if args.curve_minutes > 0:
            for learner in args.lab:
                print(f"time-to-score: {learner} for up to {args.curve_minutes:g} min", file=sys.stderr, flush=True)
                curves[learner] = time_to_score(learner, args.game, args.curve_minutes, args.device,
                                                per_learner[learner], args.curve_log)
            plot_curves(curves, args.game, args.plot)
    notes = ["steps are agent steps (4 emulator frames) of one game; the lab steps many games at once"]
    if tp:
        notes += [f"sb3 learning_starts lowered from RL-Zoo's 100,000 to {SB3_HYPERPARAMS['learning_starts']:,} "
                  "so that its window measures learning; all other sb3 hyperparameters are RL-Zoo's Atari DQN",
                  f"throughput windows open after {args.warmup_updates} gradient updates and last "
                  f"{args.seconds:g} s; evaluations are skipped in throughput runs"]
    if args.lab_override:
        notes.append(f"lab overrides: {' '.join(args.lab_override)}")
    if curves:
        notes += ["time-to-score counts wall clock from launch, evaluations included; the closing evaluation "
                  "after the time limit is part of the curve", f"curve plot: {args.plot}"]
    report = {"throughput": tp, "curve": curves, "machine": machine(args.device),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "notes": notes}
    if args.json:
        print(json.dumps(finite_or_none(report), indent=2))
    else:
        print_table(report, args.game)
    return 0


if __name__ == "__main__":
    sys.exit(main())
