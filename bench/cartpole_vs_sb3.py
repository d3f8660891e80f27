"""Time to solve CartPole-v1: the lab's DQN against Stable-Baselines3's DQN, on the same machine in one process.

The lab trains from its own config (configs/dqn/cartpole.yaml) through `lab.trainer.Trainer`, with no run dir,
tracking disabled and no progress bar. SB3 trains with the RL-Zoo hyperparameters for CartPole-v1. Seeds are
interleaved (lab 0, sb3 0, lab 1, sb3 1, …) so that load from other processes falls on both sides alike.

Both sides use the same evaluation: every 2,000 env steps, `agents.evaluation.EpisodeEvaluator("CartPole-v1")`
plays 20 greedy episodes with the same eval seeds. Time-to-solve is the wall-clock time spent TRAINING (time
inside evaluations is excluded, for both sides) until an evaluation's mean return first reaches 475; a run
stops once solved. Unsolved runs count as infinite time in the median.

Env steps: the lab steps 4 envs at a time and counts each env's step; SB3 steps one env. SB3's
`target_update_interval` (10) counts env steps, not gradient updates: the target network is copied every
10 env steps, so it equals the online network at the start of each 128-update training round and stays
fixed within the round.

    python bench/cartpole_vs_sb3.py                    # 5 seeds per side
    python bench/cartpole_vs_sb3.py --seeds 1 --json
    python bench/cartpole_vs_sb3.py --max-seconds 120  # stop a run after 120 s of training (counts as unsolved)
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from agents.evaluation import EpisodeEvaluator  # noqa: E402
from lab.config import load_config  # noqa: E402
from lab.trainer import Trainer  # noqa: E402

ENV_ID = "CartPole-v1"
SOLVED_RETURN = 475.0
EVAL_EVERY = 2_000
EVAL_EPISODES = 20

LAB_OVERRIDES = [
    "device=cpu",  # SB3 runs on the CPU too
    "tracking.mode=disabled", "trainer.progress=false",
    f"trainer.eval_every={EVAL_EVERY}", f"trainer.eval_episodes={EVAL_EPISODES}",
    "trainer.best_metric=eval/mean_return", f"trainer.stop_at={SOLVED_RETURN}",
]

# RL Baselines3 Zoo, hyperparams/dqn.yml, CartPole-v1.
SB3_STEPS = 50_000
SB3_HYPERPARAMS: dict[str, Any] = {
    "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1_000, "gamma": 0.99,
    "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04, "policy_kwargs": {"net_arch": [256, 256]},
}


@dataclass
class RunResult:
    seed: int
    time_to_solve_s: float  # training seconds until the first eval at or above SOLVED_RETURN; inf if none
    solved_at_step: int | None
    final_return: float  # mean return of the last evaluation
    env_steps: int
    train_s: float
    eval_s: float
    evals: list[tuple[int, float]] = field(default_factory=list)  # (env step, mean return)

    @property
    def steps_per_s(self) -> float:
        return self.env_steps / self.train_s


class Stopwatch:
    """Training time: wall-clock time since `start` minus the time spent inside evaluations."""

    def __init__(self) -> None:
        self.started = 0.0
        self.eval_s = 0.0
        self.evals: list[tuple[int, float, float]] = []  # (env step, mean return, training seconds before it)

    def start(self) -> None:
        self.started = time.perf_counter()

    def training_s(self) -> float:
        return time.perf_counter() - self.started - self.eval_s

    def evaluate(self, step: int, evaluate: Callable[[], dict[str, float]]) -> dict[str, float]:
        trained = self.training_s()
        start = time.perf_counter()
        metrics = evaluate()
        self.eval_s += time.perf_counter() - start
        self.evals.append((step, metrics["mean_return"], trained))
        return metrics

    def solved(self) -> bool:
        return any(ret >= SOLVED_RETURN for _, ret, _ in self.evals)

    def result(self, seed: int, env_steps: int) -> RunResult:
        train_s = self.training_s()
        solve = next(((step, trained) for step, ret, trained in self.evals if ret >= SOLVED_RETURN), None)
        return RunResult(seed=seed, time_to_solve_s=solve[1] if solve else math.inf,
                         solved_at_step=solve[0] if solve else None,
                         final_return=self.evals[-1][1] if self.evals else math.nan, env_steps=env_steps,
                         train_s=train_s, eval_s=self.eval_s, evals=[(s, r) for s, r, _ in self.evals])


def run_lab(seed: int, max_seconds: float | None) -> RunResult:
    trainer = Trainer(load_config("dqn/cartpole", LAB_OVERRIDES + [f"seed={seed}"]), None)
    task = trainer.task
    evaluate = task.evaluate
    clock = Stopwatch()
    # The Trainer calls task.evaluate for every evaluation; wrapping it is how eval time is kept out.
    task.evaluate = lambda episodes=None: clock.evaluate(trainer.step, lambda: evaluate(episodes))
    if max_seconds is not None:
        def time_limit(t: Trainer) -> None:
            # Same exit path as trainer.stop_at (request_stop would raise TrainingInterrupted).
            if clock.training_s() > max_seconds:
                t.early_stop_reason = f"--max-seconds {max_seconds:g} reached"
        trainer.callbacks.append(time_limit)
    clock.start()  # after the Trainer's construction (envs, networks): that is not training
    trainer.fit()
    return clock.result(seed, trainer.step)


def run_sb3(seed: int, max_seconds: float | None) -> RunResult:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    evaluator = EpisodeEvaluator(ENV_ID)
    model = DQN("MlpPolicy", ENV_ID, seed=seed, device="cpu", verbose=0, **SB3_HYPERPARAMS)

    clock = Stopwatch()

    def evaluate() -> dict[str, float]:
        return evaluator(lambda obs: model.predict(obs, deterministic=True)[0], EVAL_EPISODES, seed)

    class EvalAndStop(BaseCallback):
        def _on_step(self) -> bool:  # called after every env step; False ends model.learn
            if self.num_timesteps % EVAL_EVERY == 0:
                clock.evaluate(self.num_timesteps, evaluate)
                if clock.solved():
                    return False
            return max_seconds is None or clock.training_s() <= max_seconds

    clock.start()
    model.learn(SB3_STEPS, callback=EvalAndStop())
    if not clock.evals or clock.evals[-1][0] != model.num_timesteps:
        clock.evaluate(model.num_timesteps, evaluate)  # a closing evaluation, as the lab's Trainer makes
    evaluator.close()
    model.env.close()
    return clock.result(seed, model.num_timesteps)


def summarize(runs: list[RunResult], threads: int) -> dict[str, Any]:
    train_s = sum(r.train_s for r in runs)
    return {
        "median_time_to_solve_s": statistics.median(r.time_to_solve_s for r in runs),
        "solved": sum(math.isfinite(r.time_to_solve_s) for r in runs),
        "seeds": len(runs),
        "median_final_return": statistics.median(r.final_return for r in runs),
        "env_steps_per_s": sum(r.env_steps for r in runs) / train_s,
        "torch_threads": threads,
        "runs": [asdict(r) | {"steps_per_s": r.steps_per_s} for r in runs],
    }


def speedup(sb3_s: float, lab_s: float) -> float:
    """sb3 time / lab time; NaN unless both sides have a finite median."""
    return sb3_s / lab_s if math.isfinite(sb3_s) and math.isfinite(lab_s) else math.nan


def machine() -> dict[str, Any]:
    import gymnasium
    import stable_baselines3

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "usable_cpus": usable,
            "python": platform.python_version(), "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__, "gymnasium": gymnasium.__version__}


def finite_or_none(value: Any) -> Any:
    """JSON has no infinity: non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


def print_table(report: dict[str, Any]) -> None:
    print(f"CartPole-v1 time-to-solve (eval mean return ≥ {SOLVED_RETURN:g} over {EVAL_EPISODES} episodes, "
          f"evaluated every {EVAL_EVERY:,} env steps)")
    print("times are training wall-clock seconds: time spent inside evaluations is excluded, for both sides")
    header = f"{'':6}{'solved':>8}{'median time (s)':>17}{'median final return':>21}{'env steps/s':>13}{'threads':>9}"
    print(header)
    print("-" * len(header))
    for side in ("lab", "sb3"):
        s = report[side]
        print(f"{side:6}{s['solved']:>5}/{s['seeds']:<2}{s['median_time_to_solve_s']:>17.1f}"
              f"{s['median_final_return']:>21.1f}{s['env_steps_per_s']:>13,.0f}{s['torch_threads']:>9}")
    speedup = report["speedup"]
    print(f"speedup (median sb3 / median lab): {speedup:.2f}x" if math.isfinite(speedup)
          else "speedup: undefined (a median is infinite)")
    for side in ("lab", "sb3"):
        for run in report[side]["runs"]:
            where = f"step {run['solved_at_step']:,}" if run["solved_at_step"] is not None else "not solved"
            print(f"  {side} seed {run['seed']}: {run['time_to_solve_s']:.1f} s ({where}), final return "
                  f"{run['final_return']:.1f}, {run['env_steps']:,} env steps, {run['steps_per_s']:,.0f} steps/s, "
                  f"{run['eval_s']:.1f} s in evals")
    m = report["machine"]
    print(f"machine: {m['cpu']} ({m['usable_cpus']} usable of {m['cpu_count']} CPUs), {m['platform']}, "
          f"torch {m['torch']}, SB3 {m['stable_baselines3']}; {report['date']}")
    print("SB3's target_update_interval=10 counts env steps (target copied every 10 env steps).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 for each side")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop a run after this many training seconds (unsolved unless its closing eval solves)")
    args = parser.parse_args()

    default_threads = torch.get_num_threads()  # the lab's Trainer lowers it to trainer.cpu_threads
    lab_threads = load_config("dqn/cartpole").trainer.cpu_threads or default_threads
    lab_runs: list[RunResult] = []
    sb3_runs: list[RunResult] = []
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer's eval lines; stdout keeps only the report
        for seed in range(args.seeds):
            for side, run, runs in (("lab", run_lab, lab_runs), ("sb3", run_sb3, sb3_runs)):
                torch.set_num_threads(default_threads)  # SB3 keeps torch's default; the lab sets its own
                result = run(seed, args.max_seconds)
                runs.append(result)
                print(f"{side} seed {seed}: time-to-solve {result.time_to_solve_s:.1f} s, final return "
                      f"{result.final_return:.1f}, {result.env_steps:,} env steps, {result.steps_per_s:,.0f} "
                      f"steps/s (training), {result.eval_s:.1f} s in evals", flush=True)
    torch.set_num_threads(default_threads)

    lab, sb3 = summarize(lab_runs, lab_threads), summarize(sb3_runs, default_threads)
    report = {"lab": lab, "sb3": sb3,
              "speedup": speedup(sb3["median_time_to_solve_s"], lab["median_time_to_solve_s"]),
              "machine": machine(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "notes": ["times are training wall-clock seconds; time inside evaluations is excluded for both",
                        "sb3 target_update_interval counts env steps",
                        "null: infinite (unsolved) or undefined"]}
    if args.json:
        print(json.dumps(finite_or_none(report), indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
