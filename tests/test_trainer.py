"""Trainer duties: checkpoints (atomic, best, pruning), LR schedules, early stopping, tracking, signals, DDP."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lab import checkpoint as ckpt
from lab.config import OptimConfig, load_config
from lab.errors import LabError
from lab.optim import LeanAdam, lr_factor
from lab.trainer import Trainer, time_limit

ROOT = Path(__file__).resolve().parent.parent


def test_state_round_trips_without_pickle(tmp_path: Path) -> None:
    state = {"opt": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4)}}, "keys": np.arange(5, dtype=np.uint32),
             "nested": [1, 2.5, None, "x", {"flag": True}], "gen": torch.Generator().manual_seed(1).get_state()}
    ckpt.write_checkpoint(tmp_path / "step_000000001", {"w": torch.ones(2)}, state)
    loaded = ckpt.read_checkpoint(tmp_path / "step_000000001")
    assert torch.equal(loaded.state["opt"][0]["exp_avg"], state["opt"][0]["exp_avg"])
    assert loaded.state["keys"].dtype == np.uint32 and list(loaded.state["keys"]) == [0, 1, 2, 3, 4]
    assert loaded.state["nested"] == state["nested"]
    assert torch.equal(loaded.state["gen"], state["gen"])
    assert sorted(p.name for p in (tmp_path / "step_000000001").iterdir()) == \
        ["model.safetensors", "state.json", "training.safetensors"]


def test_model_weights_are_read_without_the_training_state(tmp_path: Path) -> None:
    """Evaluation, play and transfer read model.safetensors alone: a DQN's replay memory stays on disk."""
    path = tmp_path / "step_000000001"
    ckpt.write_checkpoint(path, {"w": torch.ones(2)}, {"replay": torch.zeros(8)})
    (path / "training.safetensors").unlink()
    assert torch.equal(ckpt.read_model_weights(path)["w"], torch.ones(2))
    with pytest.raises(LabError, match="damaged or incomplete"):
        ckpt.read_checkpoint(path)
    with pytest.raises(LabError, match="not a checkpoint"):
        ckpt.read_model_weights(tmp_path)


def checkpoint_names(run_dir: Path) -> dict[str, Any]:
    root = run_dir / "checkpoints"
    pointers = {p: json.loads((root / f"{p}.json").read_text())["name"] for p in ("latest", "best")
                if (root / f"{p}.json").is_file()}
    return {**pointers, "kept": sorted(p.name for p in root.glob("*step_*"))}


def test_dqn_best_checkpoints_hold_weights_alone_and_latest_stays_resumable(tmp_path: Path,
                                                                             tiny_dqn: list[str]) -> None:
    """A DQN's replay is gigabytes on Atari: an improvement writes the model alone; pruning keeps resumable ones."""
    trainer = Trainer(load_config("dqn/cartpole", tiny_dqn + ["trainer.keep_last=1"]), tmp_path)

    def save_at(step: int, best_value: float | None = None) -> None:
        trainer.step = step
        if best_value is not None:
            trainer.best_value, trainer.best_step = best_value, step
        trainer.save(best=best_value is not None)

    save_at(100)
    save_at(150, best_value=20.0)
    best = tmp_path / "checkpoints" / "best_step_000000150"
    assert sorted(p.name for p in best.iterdir()) == ["model.safetensors", "state.json"]
    assert checkpoint_names(tmp_path) == {"latest": "step_000000100", "best": "best_step_000000150",
                                          "kept": ["best_step_000000150", "step_000000100"]}
    assert ckpt.find_checkpoint(tmp_path, "latest").name == "step_000000100"
    with pytest.raises(LabError, match="weights alone .* resume from 'latest'"):
        ckpt.read_checkpoint(best)
    weights = ckpt.read_model_weights(best)
    assert all(torch.equal(weights[k], v) for k, v in trainer.task.model.state_dict().items())

    save_at(200)  # keep_last=1: the older full one goes, the best stays
    assert checkpoint_names(tmp_path)["kept"] == ["best_step_000000150", "step_000000200"]
    save_at(250, best_value=30.0)  # a superseded best goes
    assert checkpoint_names(tmp_path)["kept"] == ["best_step_000000250", "step_000000200"]
    save_at(300, best_value=40.0)  # the trainer's order at a step that both evaluates and checkpoints:
    save_at(300)  # the full checkpoint of the same model replaces the weights-only best
    assert checkpoint_names(tmp_path) == {"latest": "step_000000300", "best": "step_000000300",
                                          "kept": ["step_000000300"]}
    assert json.loads((tmp_path / "checkpoints" / "best.json").read_text())["value"] == 40.0
    trainer.task.close()


def test_a_run_with_only_a_weights_only_best_says_it_cannot_be_resumed(tmp_path: Path, tiny_dqn: list[str]) -> None:
    trainer = Trainer(load_config("dqn/cartpole", tiny_dqn), tmp_path)
    trainer.step, trainer.best_value, trainer.best_step = 150, 20.0, 150
    trainer.save(best=True)
    trainer.task.close()
    assert ckpt.find_checkpoint(tmp_path, "best").name == "best_step_000000150"
    with pytest.raises(LabError, match="no resumable checkpoint yet: its best one holds the model's weights alone"):
        ckpt.find_checkpoint(tmp_path, "latest")


def test_a_resumed_run_keeps_a_newer_weights_only_best(tmp_path: Path, tiny_dqn: list[str]) -> None:
    """Resuming from a full checkpoint older than the best one: neither a worse model nor a full checkpoint of
    the best's step may replace the best, and evaluations before its step count for patience as they did."""
    config = load_config("dqn/cartpole", tiny_dqn + [
        "trainer.max_steps=400", "trainer.eval_every=50", "trainer.checkpoint_every=50", "trainer.patience=2"])
    first = Trainer(config, tmp_path)
    first.step = 100
    first.save()
    with torch.no_grad():
        for param in first.task.model.parameters():
            param.fill_(0.5)  # unlike any trained model
    first.step, first.best_value, first.best_step = 200, 1e9, 200
    first.save(best=True)
    first.task.close()

    result = Trainer(config, tmp_path).fit(resume_from=ckpt.find_checkpoint(tmp_path, "latest"))
    # Evaluations at 152 (an improvement on the resumed state, as it was for the unbroken run; not saved, the
    # newer best being better), 200 and 252 (no improvement on the saved best: patience 2 ends the run there).
    assert result["step"] == 252 and result["early_stop"].startswith("no improvement")
    assert (result["best"], result["best_step"]) == (1e9, 200)
    names = checkpoint_names(tmp_path)
    assert names["best"] == "best_step_000000200" and "step_000000200" in names["kept"]
    best = ckpt.read_model_weights(tmp_path / "checkpoints" / "best_step_000000200")
    assert all(bool((tensor == 0.5).all()) for tensor in best.values())


def test_checkpoints_written_before_weights_only_ones_existed_still_resume(tmp_path: Path) -> None:
    path = tmp_path / "step_000000001"
    ckpt.write_checkpoint(path, {"w": torch.ones(2)}, {"a": 1})
    tree = json.loads((path / "state.json").read_text())
    del tree["weights_only"]
    (path / "state.json").write_text(json.dumps(tree))
    assert ckpt.read_checkpoint(path).state == {"a": 1}
    assert torch.equal(ckpt.read_model_weights(path)["w"], torch.ones(2))


def test_evaluating_a_trained_dqn_allocates_no_replay(tmp_path: Path, tiny_dqn: list[str]) -> None:
    from lab.runs import create_run_dir, load_trained_task

    config = load_config("dqn/cartpole", tiny_dqn + ["trainer.max_steps=200"])
    create_run_dir(tmp_path / "run", config, "dqn/cartpole")
    Trainer(config, tmp_path / "run").fit()
    task, _, _ = load_trained_task(tmp_path / "run")
    assert "buffer" not in vars(task)  # the replay is made on first use, which evaluation never is
    assert task.evaluate(1)["mean_return"] > 0
    assert "buffer" not in vars(task)
    task.close()


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    ckpt.write_checkpoint(tmp_path / "checkpoints" / "step_000000001", {"w": torch.ones(2)}, {"a": 1})
    ckpt.atomic_write_json(tmp_path / "checkpoints" / "latest.json", {"name": "step_000000001"})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if killed half-way through writing the tensors

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.write_checkpoint(tmp_path / "checkpoints" / "step_000000002", {"w": torch.zeros(2)}, {"a": 2})
    latest = ckpt.find_checkpoint(tmp_path, "latest")
    assert latest.name == "step_000000001"
    assert ckpt.read_checkpoint(latest).state == {"a": 1}


def test_loading_into_another_model_is_a_clear_error(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 2)
    with pytest.raises(LabError, match=r"'weight' has shape \[2, 3\] there but \[2, 4\] here"):
        ckpt.load_model_weights(model, {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}, tmp_path)
    with pytest.raises(LabError, match="does not fit this model"):
        ckpt.load_model_weights(model, {"weight": torch.zeros(2, 4)}, tmp_path)


def test_lr_schedules() -> None:
    cfg = OptimConfig(schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, 110, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(60, 110, cfg) == pytest.approx(0.55)
    assert lr_factor(110, 110, cfg) == pytest.approx(0.1)
    linear = OptimConfig(schedule="linear")
    assert lr_factor(50, 100, linear) == pytest.approx(0.5)
    assert lr_factor(50, 100, OptimConfig()) == 1.0


def adam_pair(**options) -> tuple[list[torch.nn.Module], list[torch.optim.Optimizer]]:
    """Two identical two-layer models, one stepped by torch's fused Adam and one by LeanAdam."""
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = []
    for model, build in zip(models, (lambda g, **o: torch.optim.Adam(g, fused=True, **o), LeanAdam)):
        groups = [{"params": model[0].parameters()}, {"params": model[1].parameters(), "weight_decay": 0.1}]
        optimizers.append(build(groups, **options))
    return models, optimizers


def step_both(models: list, optimizers: list, x: torch.Tensor, lr: float, frozen: bool = False) -> None:
    for model, optimizer in zip(models, optimizers):
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        if frozen:  # a parameter without a gradient this step is left alone
            model[1].bias.grad = None
        optimizer.step()


def test_lean_adam_steps_bitwise_like_torch_fused_adam() -> None:
    models, optimizers = adam_pair(lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    generator = torch.Generator().manual_seed(1)
    for step in range(6):
        step_both(models, optimizers, torch.randn(8, 3, generator=generator), lr=0.01 / (step + 1), frozen=step == 3)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(models[1][0].weight, adam_pair()[0][1][0].weight)  # and it did train
    # The states match and load across the two classes: a checkpoint does not care which one wrote it.
    torch_state, lean_state = (o.state_dict() for o in optimizers)
    for key in torch_state["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(torch_state["state"][key][name], lean_state["state"][key][name])
    fresh_models, fresh = adam_pair(lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    fresh_models[1].load_state_dict(models[1].state_dict())
    fresh[1].load_state_dict(torch_state)
    x = torch.randn(8, 3, generator=generator)
    step_both([models[1], fresh_models[1]], [optimizers[1], fresh[1]], x, lr=0.003)
    for a, b in zip(models[1].parameters(), fresh_models[1].parameters()):
        assert torch.equal(a, b)


def test_lean_adam_honours_step_hooks() -> None:
    models, optimizers = adam_pair(lr=0.01)
    calls = []
    optimizers[1].register_step_post_hook(lambda optimizer, args, kwargs: calls.append(optimizer))
    for _ in range(3):
        step_both(models, optimizers, torch.ones(2, 3), lr=0.01)
    assert calls == [optimizers[1]] * 3
    assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))


def test_best_checkpoint_pruning_and_early_stop(tmp_path: Path, tiny_digits: list[str]) -> None:
    config = load_config("vision/digits", tiny_digits + [
        "trainer.max_steps=400", "trainer.eval_every=10", "trainer.checkpoint_every=10", "trainer.keep_last=2",
        "trainer.stop_at=0.5", "optim.grad_clip=1.0"])
    (tmp_path / "run").mkdir()
    result = Trainer(config, tmp_path / "run").fit()
    assert result["early_stop"].startswith("eval/valid_accuracy")
    assert result["step"] < 400 and result["eval"]["eval/valid_accuracy"] >= 0.5
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best["value"] == result["best"] and best["metric"] == "eval/valid_accuracy"
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert len(kept) <= 3 and best["name"] in kept
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/grad_norm" in r for r in records)
    assert (tmp_path / "run" / "plots" / "confusion_matrix.png").is_file()


def test_patience_stops_a_run_that_does_not_improve(tiny_digits: list[str]) -> None:
    config = load_config("vision/digits", tiny_digits + [
        "trainer.max_steps=400", "trainer.eval_every=5", "trainer.patience=2", "optim.lr=1e-9"])
    result = Trainer(config, None).fit()
    assert "no improvement" in result["early_stop"] and result["step"] < 400


def test_time_limit_ends_a_run_with_its_final_evaluation(tiny_digits: list[str]) -> None:
    spent = Trainer(load_config("vision/digits", tiny_digits), None,
                    callbacks=[time_limit(0.0, "budget used")]).fit()
    assert spent["step"] == 1 and spent["early_stop"] == "budget used" and spent["eval"]
    pending = Trainer(load_config("vision/digits", tiny_digits), None,
                      callbacks=[time_limit(3600.0, "budget used")]).fit()
    assert pending["step"] == 40 and pending["early_stop"] is None
    # An earlier stop reason stands: the limit does not overwrite it.
    def stop_first(trainer: Trainer) -> None:
        trainer.early_stop_reason = "stopped first"
    kept = Trainer(load_config("vision/digits", tiny_digits), None,
                   callbacks=[stop_first, time_limit(0.0, "budget used")]).fit()
    assert kept["early_stop"] == "stopped first"


def test_offline_wandb_run_is_syncable_and_metrics_jsonl_always_written(tmp_path: Path, tiny_digits, monkeypatch,
                                                                         capfd):
    import agents  # noqa: F401  (always loaded by an agent run; wandb mistakes it for OpenAI's Agents SDK)
    import wandb.errors.term

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DISABLE_WEAVE", raising=False)
    monkeypatch.delenv("WANDB_SILENT", raising=False)  # as a user's shell has it
    monkeypatch.setattr(wandb.errors.term, "_printed_messages", set())  # wandb says some things once a process
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    config = load_config("vision/digits", tiny_digits + ["tracking.mode=offline", "trainer.max_steps=10"])
    (tmp_path / "run").mkdir()
    Trainer(config, tmp_path / "run").fit()
    offline = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("run-*.wandb"))
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("eval/valid_accuracy") == 1
    printed = capfd.readouterr()
    assert "Weave" not in printed.out + printed.err  # no advertisement for an LLM tracer at each start


def lab_process(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "lab", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_run_resumes_to_the_same_weights(tmp_path: Path, tiny_dqn: list[str], kill: int) -> None:
    overrides = tiny_dqn + ["trainer.max_steps=1200", "trainer.checkpoint_every=100"]
    unbroken = lab_process(["train", "dqn/cartpole", *overrides, "--run-dir", "unbroken"], tmp_path)
    stopped = lab_process(["train", "dqn/cartpole", *overrides, "trainer.progress=true", "--run-dir", "stopped",
                           "--json"], tmp_path)
    wait_for(tmp_path / "stopped" / "checkpoints" / "latest.json")
    stopped.send_signal(kill)
    out, err = stopped.communicate(timeout=60)
    assert stopped.returncode == -signal.SIGKILL if kill == signal.SIGKILL else stopped.returncode == 128 + kill
    if kill == signal.SIGTERM:
        assert "SIGTERM: stopping after this step" in err and "resume with: lab train --resume stopped" in err
        assert out == ""  # stdout is for the --json result alone: no progress bar, no notices
    resumed = lab_process(["train", "--resume", "stopped"], tmp_path)
    assert resumed.wait(timeout=120) == 0 and unbroken.wait(timeout=120) == 0
    a = ckpt.read_checkpoint(ckpt.find_checkpoint(tmp_path / "unbroken", "latest"))
    b = ckpt.read_checkpoint(ckpt.find_checkpoint(tmp_path / "stopped", "latest"))
    assert a.path.name == b.path.name == "step_000001200"
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)


def test_ddp_under_torchrun_syncs_gradients_and_only_rank0_writes(tmp_path: Path, tiny_digits: list[str]) -> None:
    script = ROOT / "tests" / "helpers" / "ddp_train.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                             str(script), str(tmp_path / "run"), str(tmp_path), *tiny_digits],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    weights = [k for k in rank0 if k not in ("batches_seen", "first_batch")]
    assert weights and all(torch.equal(rank0[k], rank1[k]) for k in weights)  # in sync, yet fed other batches
    assert rank0["batches_seen"].item() == rank1["batches_seen"].item() == 40
    assert not torch.equal(rank0["first_batch"], rank1["first_batch"])  # each rank has its own shard
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len({json.loads(m)["step"] for m in metrics if "train/loss" in m}) == len(
        [m for m in metrics if "train/loss" in m])  # one writer: no step logged twice


def test_agent_eval_video_goes_to_wandb_at_the_end(tmp_path: Path, tiny_dqn: list[str], monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = load_config("dqn/cartpole", tiny_dqn + ["tracking.mode=offline", "tracking.video_frames=12",
                                                      "trainer.max_steps=200", "trainer.eval_every=100"])
    (tmp_path / "run").mkdir()
    Trainer(config, tmp_path / "run").fit()
    assert [p.name for p in (tmp_path / "run" / "media").iterdir()] == ["eval-video-200.mp4"]  # final eval only
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/files/media/videos/eval/*.mp4"))


def test_an_early_stopped_agent_still_gets_its_video(tmp_path: Path, tiny_dqn: list[str], monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = load_config("dqn/cartpole", tiny_dqn + ["tracking.mode=offline", "tracking.video_frames=8",
                                                      "trainer.eval_every=100", "trainer.stop_at=0"])
    (tmp_path / "run").mkdir()
    result = Trainer(config, tmp_path / "run").fit()
    assert result["early_stop"] and result["step"] < 600
    assert [p.name for p in (tmp_path / "run" / "media").iterdir()] == [f"eval-video-{result['step']}.mp4"]
