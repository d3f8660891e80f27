"""Train one config through the Trainer and print what its docs record: the eval curve, final and best returns.

    python bench/measure_config.py dqn/acrobot [--budget-seconds 300] [key=value ...]

Prints one JSON line. Used for the measured returns in docs/agents.md (one run per core, device=cpu).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from lab.config import load_config
from lab.trainer import Trainer, time_limit


def measure(config_name: str, overrides: list[str], budget_seconds: float) -> dict:
    torch.set_num_threads(1)
    base = ["device=cpu", "tracking.mode=disabled", "trainer.progress=false"]
    trainer = Trainer(load_config(config_name, base + overrides), None)
    start = time.perf_counter()
    curve: list[tuple[int, float, float]] = []

    def watch(t: Trainer) -> None:
        if t.last_eval_step == t.step and (not curve or curve[-1][0] != t.step):
            curve.append((t.step, t.last_eval.get("eval/mean_return"), round(time.perf_counter() - start, 1)))

    trainer.callbacks += [watch, time_limit(budget_seconds, f"time budget of {budget_seconds:g} s", start)]
    result = trainer.fit()
    return {"config": config_name, "overrides": overrides, "step": result["step"], "final": result["eval"],
            "best": result["best"], "best_step": result["best_step"], "early_stop": result["early_stop"],
            "curve": curve, "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--budget-seconds", type=float, default=float("inf"))
    args = parser.parse_args()
    print(json.dumps(measure(args.config, args.overrides, args.budget_seconds)), flush=True)


if __name__ == "__main__":
    main()
