"""Resume: a run stopped at any step and resumed ends bitwise equal to an unbroken run (DQN and supervised)."""
import json
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lab.checkpoint import find_checkpoint
from lab.config import load_config
from lab.trainer import Trainer, TrainingInterrupted


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(find_checkpoint(run_dir, "latest") / "model.safetensors"))


def deterministic_metrics(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def run(config_name: str, overrides: list[str], run_dir: Path, stop_at: int | None = None) -> None:
    config = load_config(config_name, overrides)
    run_dir.mkdir()
    stopper = [lambda t: t.request_stop(signal.SIGTERM) if stop_at is not None and t.step >= stop_at else None]
    Trainer(config, run_dir, callbacks=stopper).fit()


def interrupted_then_resumed(config_name: str, overrides: list[str], run_dir: Path, stop_at: int) -> None:
    with pytest.raises(TrainingInterrupted) as info:
        run(config_name, overrides, run_dir, stop_at)
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert info.value.checkpoint.name == f"step_{stop_at:09d}"
    Trainer(load_config(config_name, overrides), run_dir).fit(resume_from=find_checkpoint(run_dir, "latest"))


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert deterministic_metrics(a) == deterministic_metrics(b)


@pytest.fixture(scope="module")
def unbroken_dqn(tmp_path_factory) -> Path:
    from tests.conftest import TINY_DQN

    run_dir = tmp_path_factory.mktemp("dqn") / "unbroken"
    run("dqn/cartpole", TINY_DQN, run_dir)
    return run_dir


# 52: before learning starts; 256: mid-training between checkpoints and evals; 400: on a checkpoint step.
@pytest.mark.parametrize("stop_at", [52, 256, 400])
def test_dqn_resume_is_bitwise(unbroken_dqn: Path, tmp_path: Path, tiny_dqn: list[str], stop_at: int) -> None:
    resumed = tmp_path / "resumed"
    interrupted_then_resumed("dqn/cartpole", tiny_dqn, resumed, stop_at)
    assert_same_run(unbroken_dqn, resumed)


def test_dqn_resume_with_prioritized_replay_is_bitwise(tmp_path: Path, tiny_dqn: list[str]) -> None:
    overrides = tiny_dqn + ["agent.prioritized=true", "agent.n_step=3", "trainer.max_steps=400"]
    run("dqn/cartpole", overrides, tmp_path / "unbroken")
    interrupted_then_resumed("dqn/cartpole", overrides, tmp_path / "resumed", 212)
    assert_same_run(tmp_path / "unbroken", tmp_path / "resumed")


@pytest.mark.parametrize("stop_at", [7, 23])
def test_supervised_resume_is_bitwise(tmp_path: Path, tiny_digits: list[str], stop_at: int) -> None:
    overrides = tiny_digits + ["data.augment.max_translate=0.1"]
    run("vision/digits", overrides, tmp_path / "unbroken")
    interrupted_then_resumed("vision/digits", overrides, tmp_path / "resumed", stop_at)
    assert_same_run(tmp_path / "unbroken", tmp_path / "resumed")
