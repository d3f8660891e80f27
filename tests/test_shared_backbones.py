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


def test_a_pixel_torso_on_vector_observations_says_to_use_the_mlp(tiny_dqn: list[str]) -> None:
    config = load_config("dqn/cartpole", tiny_dqn + ["model.torso=nature_cnn"])
    with pytest.raises(LabError, match=r"model.torso=nature_cnn reads images .* observations are vectors of 4: "
                                       r"use model.torso=mlp"):
        Trainer(config, None)


def test_an_unknown_torso_names_the_valid_ones(tiny_dqn: list[str]) -> None:
    with pytest.raises(LabError, match=r"unknown model.torso 'natur_cnn'.*did you mean 'nature_cnn'"):
        load_config("dqn/cartpole", tiny_dqn + ["model.torso=natur_cnn"])  # so lab config refuses it too


# A small net with every kind of transferable tensor: conv, batch norm (weights and running statistics), and a
# hidden fc in the head (pre-logits), in front of the classifier that a transfer replaces.
BN_NET = ("model.layers=[{conv: {out: 8, kernel: 3, padding: 1}}, {batchnorm: {}}, {activation: relu}, "
          "{pool: {kernel: 2}}, {flatten: {}}, {fc: 16}, {activation: relu}]")


def train_source(run_dir: Path, overrides: list[str]) -> dict[str, torch.Tensor]:
    run_dir.mkdir()
    Trainer(load_config("vision/digits", overrides), run_dir).fit()
    return read_checkpoint(find_checkpoint(run_dir, "best")).model


def test_init_from_freezes_the_whole_network_but_its_new_classifier(tmp_path: Path, tiny_digits: list[str]) -> None:
    net = tiny_digits + ["model.name=null", BN_NET, "data.image_size=8"]
    source = train_source(tmp_path / "source", net)
    frozen = Trainer(load_config("vision/digits", net + [
        f"model.init_from={tmp_path / 'source'}", "model.freeze_backbone=true", "trainer.max_steps=10"]), None)
    start = {k: v.clone() for k, v in frozen.task.model.state_dict().items()}
    transferred = [k for k in source if not k.startswith("head.fc.") and not k.endswith("num_batches_tracked")]
    assert {"features.1.running_mean", "head.pre_logits.1.weight"} <= set(transferred)
    assert all(torch.equal(start[k], source[k]) for k in transferred)  # copied, the head's hidden fc included
    frozen.fit()
    weights = frozen.task.model.state_dict()
    assert all(torch.equal(weights[k], source[k]) for k in transferred)  # untouched, batch-norm statistics too
    assert not torch.equal(weights["head.fc.weight"], start["head.fc.weight"])  # the new classifier trained

    tuned = Trainer(load_config("vision/digits", net + [
        f"model.init_from={tmp_path / 'source'}", "model.backbone_lr=1e-5", "trainer.max_steps=10"]), None)
    assert sorted(g["lr"] for g in tuned.optimizer.param_groups) == [1e-5, tuned.config.optim.lr]
    tuned.fit()
    assert not torch.equal(tuned.task.model.state_dict()["features.1.running_mean"], source["features.1.running_mean"])


def test_init_from_a_network_that_only_half_fits_is_an_error(tmp_path: Path, tiny_digits: list[str]) -> None:
    net = tiny_digits + ["model.name=null", BN_NET, "data.image_size=8"]
    train_source(tmp_path / "source", net)
    wider_head = [o.replace("{fc: 16}", "{fc: 32}") for o in net]
    with pytest.raises(LabError, match=r"'head.pre_logits.1.weight' has shape \[16, 128\] in .* this model's is "
                                       r"\[32, 128\]: the new run must build the same network"):
        Trainer(load_config("vision/digits", wider_head + [f"model.init_from={tmp_path / 'source'}"]), None)
    deeper = [o.replace("{fc: 16}, {activation: relu}", "{fc: 16}, {activation: relu}, {fc: 16}") for o in net]
    train_source(tmp_path / "deeper", deeper)
    with pytest.raises(LabError, match=r"deeper' has 'head.pre_logits.3.bias' \(and 1 more tensors\) that this "
                                       r"model lacks"):  # a larger source never fills a smaller model halfway
        Trainer(load_config("vision/digits", net + [f"model.init_from={tmp_path / 'deeper'}"]), None)
    with pytest.raises(LabError, match=r"'c1.conv.weight' is missing"):
        Trainer(load_config("vision/digits", tiny_digits + [f"model.init_from={tmp_path / 'source'}"]), None)
    with pytest.raises(LabError, match=r"^model.init_from: run dir '.*absent' does not exist"):
        Trainer(load_config("vision/digits", tiny_digits + [f"model.init_from={tmp_path / 'absent'}"]), None)


def test_a_transfer_run_resumes_without_its_source(tmp_path: Path, tiny_digits: list[str]) -> None:
    import shutil

    from tests.test_resume import assert_same_run, interrupted_then_resumed, run

    train_source(tmp_path / "source", tiny_digits)
    overrides = tiny_digits + [f"model.init_from={tmp_path / 'source'}", "model.freeze_backbone=true"]
    run("vision/digits", overrides, tmp_path / "unbroken")
    with pytest.MonkeyPatch.context() as patch:
        # The source goes away between the stop and the resume.
        real_fit = Trainer.fit

        def fit_then_remove_source(self, resume_from=None):  # noqa: ANN001, ANN202
            try:
                return real_fit(self, resume_from)
            finally:
                if resume_from is None:
                    shutil.rmtree(tmp_path / "source", ignore_errors=True)

        patch.setattr(Trainer, "fit", fit_then_remove_source)
        interrupted_then_resumed("vision/digits", overrides, tmp_path / "transfer", 20)
    assert not (tmp_path / "source").exists()
    assert find_checkpoint(tmp_path / "transfer", "latest").name == "step_000000040"
    assert_same_run(tmp_path / "unbroken", tmp_path / "transfer")


def test_an_agent_starts_its_torso_from_another_runs_encoder(tmp_path: Path, tiny_dqn: list[str]) -> None:
    from vision import create_backbone
    from vision.transfer import load_backbone

    pixels = tiny_dqn + ["env.id=lab/CatchPixels-v0", "model.torso=nature_cnn", "model.hidden=[]",
                         "trainer.max_steps=100", "trainer.eval_every=100", "trainer.checkpoint_every=100",
                         "agent.learning_starts=50", "agent.buffer_size=200", "trainer.eval_episodes=1"]
    (tmp_path / "agent").mkdir()
    Trainer(load_config("dqn/cartpole", pixels), tmp_path / "agent").fit()
    source = read_checkpoint(find_checkpoint(tmp_path / "agent", "best")).model
    second = Trainer(load_config("dqn/cartpole", pixels + [f"model.init_from={tmp_path / 'agent'}"]), None)
    weights = second.task.model.state_dict()
    encoder = [k for k in source if k.startswith("torso.encoder.")]
    assert encoder and all(torch.equal(weights[k], source[k]) for k in encoder)
    assert not torch.equal(weights["head.weight"], source["head.weight"])  # the Q-head is the agent's own

    classifier = create_backbone("nature_cnn", in_chans=3, num_classes=5, input_size=(65, 50))
    filled = load_backbone(classifier, tmp_path / "agent")  # an agent's encoder as an image classifier's backbone
    assert torch.equal(classifier.state_dict()["conv1.conv.weight"], source["torso.encoder.conv1.conv.weight"])
    assert not any(key.startswith("head.fc.") for key in filled)

    with pytest.raises(LabError, match="needs a pixel torso"):
        Trainer(load_config("dqn/cartpole", tiny_dqn + [f"model.init_from={tmp_path / 'agent'}"]), None)


@pytest.mark.parametrize("torso, message", [
    ("unet", "model.torso=unet outputs a 32×65×50 map, not a feature vector"),
    ("resnet18", "model.torso=resnet18 has no layer norm option: set model.layer_norm=false"),
])
def test_torsos_that_cannot_serve_are_refused(torso: str, message: str, tiny_dqn: list[str]) -> None:
    config = load_config("pqn/cartpole", tiny_dqn[:3] + ["env.id=lab/CatchPixels-v0", f"model.torso={torso}",
                                                         f"model.layer_norm={torso != 'unet'}"])
    with pytest.raises(LabError, match=message):
        Trainer(config, None)


def test_pqn_trains_an_impala_torso_with_layer_norm(tiny_dqn: list[str]) -> None:
    config = load_config("pqn/cartpole", tiny_dqn[:3] + [
        "env.id=lab/CatchPixels-v0", "model.torso=impala_cnn", "env.num_envs=2", "agent.rollout_steps=4",
        "agent.minibatches=2", "trainer.max_steps=16", "trainer.eval_every=16", "trainer.eval_episodes=1"])
    trainer = Trainer(config, None)
    norms = [m for m in trainer.task.model.torso.encoder.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 15  # 3 stages × (1 conv + 2 blocks × 2 convs)
    assert trainer.fit()["step"] >= 16


def test_agent_encoder_is_another_name_for_the_torso(tiny_dqn: list[str]) -> None:
    config = load_config("pqn/pong", ["agent.encoder=impala"])  # the shipped config says nature_cnn
    assert config.model.torso == "impala_cnn" and "encoder" not in config.agent.model_dump()
    assert load_config("dqn/catch", ["agent.encoder=nature_cnn"]).model.torso == "nature_cnn"
