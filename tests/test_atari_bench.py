"""Smoke test of bench/atari_vs_sb3.py at a tiny CPU budget (the real numbers come from a GPU machine)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

# Small enough for two CPU cores: 4 games, a tiny replay, no compile, one-game evaluations.
TINY = ["env.num_envs=4", "model.compile=false", "model.bf16=false", "trainer.eval_every=1000",
        "trainer.eval_episodes=1", "dqn:agent.buffer_size=2000", "dqn:agent.learning_starts=200",
        "dqn:agent.batch_size=32", "pqn:agent.minibatches=4"]


def load_bench():  # noqa: ANN201
    from bench import atari_vs_sb3

    return atari_vs_sb3


def test_cpu_run_reports_throughput_ratios_and_curves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench()
    plot = tmp_path / "curve.png"
    log = tmp_path / "evals.jsonl"
    argv = ["--device", "cpu", "--seconds", "2", "--warmup-updates", "2", "--curve-minutes", "0.1",
            "--plot", str(plot), "--curve-log", str(log), "--json"]
    argv += [arg for override in TINY for arg in ("--lab-override", override)]
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)

    throughput = report["throughput"]
    for side in ("sb3", "dqn", "pqn"):
        assert throughput[side]["env_steps_per_s"] > 0 and throughput[side]["updates_per_s"] > 0
        assert throughput[side]["window_s"] >= 2
    assert throughput["dqn"]["num_envs"] == 4 and throughput["sb3"]["num_envs"] == 1
    ratios = throughput["ratios"]
    assert ratios["target"] == 25
    for learner in ("dqn", "pqn"):
        expected = throughput[learner]["env_steps_per_s"] / throughput["sb3"]["env_steps_per_s"]
        assert ratios[learner]["ratio"] == pytest.approx(expected)
        assert ratios[learner]["met"] == (expected >= 25)

    for learner in ("dqn", "pqn"):
        curve = report["curve"][learner]
        assert curve["target"] == 18 and curve["evals"]  # at least the closing evaluation
        assert curve["time_to_target_s"] is None  # seconds of play cannot win at Pong
        walls = [e["wall_s"] for e in curve["evals"]]
        assert walls == sorted(walls) and walls[-1] <= curve["wall_s"]
        assert -21 <= curve["final_return"] <= 21
    assert plot.stat().st_size > 0
    logged = [json.loads(line) for line in log.read_text().splitlines()]  # written as each evaluation ended
    assert logged == [{"learner": learner, **e} for learner in ("dqn", "pqn") for e in report["curve"][learner]["evals"]]
    assert {"machine", "date", "notes"} <= report.keys() and report["machine"]["ale_py"]


def test_overrides_go_to_every_learner_or_to_the_one_named() -> None:
    split = load_bench().split_overrides(["env.num_envs=4", "dqn:agent.buffer_size=2000", "pqn:agent.epochs=1"])
    assert split == {"dqn": ["env.num_envs=4", "agent.buffer_size=2000"],
                     "pqn": ["env.num_envs=4", "agent.epochs=1"]}


def test_skip_throughput_runs_only_the_curve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--device", "cpu", "--skip-throughput", "--lab", "pqn", "--curve-minutes", "0.05",
            "--plot", str(tmp_path / "curve.png")]
    argv += [arg for override in TINY if not override.startswith("dqn:") for arg in ("--lab-override", override)]
    assert load_bench().main(argv) == 0
    table = capsys.readouterr().out
    assert "training throughput" not in table and "sb3" not in table.split("machine:")[0]
    assert "time-to-score pqn: eval ≥ 18 not reached" in table and "time-to-score dqn" not in table
    assert "learning_starts" not in table and "throughput windows" not in table  # notes on runs not made


@pytest.mark.parametrize("argv", [["--lab", "ppo"], ["--seconds", "0"], ["--curve-minutes", "-1"],
                                  ["--skip-throughput", "--curve-minutes", "0"]])
def test_bad_arguments_exit_with_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        load_bench().parse_args(argv)


@pytest.mark.parametrize("argv, message", [
    (["--lab-override", "agent.bogus=1"], "unknown key 'agent.bogus'"),
    (["--game", "Qbert"], "config file 'dqn/qbert' not found"),
    (["--lab", "pqn", "--lab-override", "pqn:trainer.max_steps=abc"], "trainer.max_steps"),
])
def test_bad_inputs_fail_before_any_side_is_measured(argv: list[str], message: str, capsys, monkeypatch) -> None:
    from bench import atari_vs_sb3

    def must_not_run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a side was measured before the inputs were checked")

    monkeypatch.setattr(atari_vs_sb3, "measure_sb3", must_not_run)
    monkeypatch.setattr(atari_vs_sb3, "measure_lab", must_not_run)
    assert atari_vs_sb3.main(["--device", "cpu", "--curve-minutes", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_replay_memory_bench_checks_its_stacks_and_refuses_a_buffer_too_small() -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "replay_memory.py"
    done = subprocess.run([sys.executable, str(script), "--capacity", "2048", "--json"], capture_output=True,
                          text=True, timeout=300, check=True)
    report = json.loads(done.stdout)
    assert report["check"]["identical"] and report["check"]["transitions_compared"] > 500
    assert report["transitions"] == 2048
    refused = subprocess.run([sys.executable, str(script), "--capacity", "10"], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "--capacity must be at least 1,024" in refused.stderr
