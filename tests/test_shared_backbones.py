"""Vision backbones shared with RL and across runs: pixel torsos for agents, transfer learning between runs."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lab.checkpoint import find_checkpoint, read_checkpoint
from lab.config import load_config
from lab.errors import LabError
from lab.trainer import Trainer


def test_dqn_takes_its_pixel_torso_from_the_vision_registry(tiny_dqn: list[str]) -> None:
    config = load_config("dqn/cartpole", tiny_dqn + [
        "env.id=lab/CatchPixels-v0", "model.torso=nature_cnn", "trainer.max_steps=150", "trainer.eval_every=150",
        "agent.learning_starts=64", "agent.buffer_size=500", "trainer.eval_episodes=1"])
    trainer = Trainer(config, None)
    assert type(trainer.task.model.torso.encoder).__name__ == "NatureCNN"
    assert trainer.task.buffer.obs.dtype == torch.uint8  # frames stored as bytes, scaled on the device
    result = trainer.fit()
    assert result["step"] >= 150 and "eval/mean_return" in result["eval"]


def test_a_pixel_torso_imports_vision_but_not_the_nlp_stack() -> None:
    probe = ("import sys; from lab.config import load_config; from lab.trainer import Trainer\n"
             "config = load_config('dqn/catch', ['env.id=lab/CatchPixels-v0', 'model.torso=nature_cnn',"
             " 'tracking.mode=disabled', 'device=cpu'])\n"
             "print(type(Trainer(config, None).task.model.torso.encoder).__name__,"
             " sorted(m for m in ('nlp', 'tokenizers', 'vision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["NatureCNN", "['vision']"]


def test_an_unknown_torso_names_the_valid_ones(tiny_dqn: list[str]) -> None:
    config = load_config("dqn/cartpole", tiny_dqn + ["model.torso=natur_cnn"])
    with pytest.raises(LabError, match=r"unknown model.torso 'natur_cnn'.*did you mean 'nature_cnn'"):
        Trainer(config, None)


def test_init_from_another_run_freezes_or_fine_tunes_its_backbone(tmp_path: Path, tiny_digits: list[str]) -> None:
    (tmp_path / "source").mkdir()
    Trainer(load_config("vision/digits", tiny_digits), tmp_path / "source").fit()
    source = read_checkpoint(find_checkpoint(tmp_path / "source", "best")).model

    frozen = Trainer(load_config("vision/digits", tiny_digits + [
        f"model.init_from={tmp_path / 'source'}", "model.freeze_backbone=true", "trainer.max_steps=10"]), None)
    frozen.fit()
    weights = frozen.task.model.state_dict()
    backbone = [k for k in source if not k.startswith("head.")]
    assert backbone and all(torch.equal(weights[k], source[k]) for k in backbone)  # reused, untouched
    assert not torch.equal(weights["head.fc.weight"], source["head.fc.weight"])  # a new head, trained

    tuned = Trainer(load_config("vision/digits", tiny_digits + [
        f"model.init_from={tmp_path / 'source'}", "model.backbone_lr=1e-5", "trainer.max_steps=10"]), None)
    assert sorted(g["lr"] for g in tuned.optimizer.param_groups) == [1e-5, tuned.config.optim.lr]
