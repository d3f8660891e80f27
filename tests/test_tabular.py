"""Tabular Q-learning / SARSA through the Trainer: the SGD step is the textbook update, targets differ as they
should, the agents learn, resume is bitwise, and `lab qtable` shows the result."""
import json
from pathlib import Path

import pytest
import torch

from lab.cli import main
from lab.config import load_config
from lab.errors import LabError
from lab.trainer import Trainer

QUIET = ["device=cpu", "tracking.mode=disabled", "trainer.progress=false"]


def make_task(overrides: list[str]):
    return Trainer(load_config("qlearning/cliffwalking_sarsa", QUIET + overrides), None)


def test_one_sgd_step_is_the_tabular_update() -> None:
    trainer = make_task(["agent.algorithm=q_learning", "agent.gamma=0.9", "optim.lr=0.5", "agent.epsilon_start=0",
                         "agent.epsilon_end=0"])
    task = trainer.task
    with torch.no_grad():
        task.model.table.copy_(torch.arange(48 * 4, dtype=torch.float32).reshape(48, 4) / 100)
    task.actions[0] = 0  # up from the start: a plain −1 step (right would fall off the cliff)
    state, action = int(task.states[0]), 0
    before = task.model.table.detach().clone()
    out = task.train_step()
    next_state = int(task.states[0])
    # CliffWalking: every step costs −1; Q-learning bootstraps from max_a Q(s′, a).
    target = -1 + 0.9 * before[next_state].max()
    expected = before[state, action] + 0.5 * (target - before[state, action])
    trainer._update(out.loss)
    after = task.model.table.detach()
    assert after[state, action].item() == pytest.approx(expected.item(), abs=1e-6)
    changed = (after != before).nonzero().tolist()
    assert changed == [[state, action]]  # nothing else moves


@pytest.mark.parametrize("algorithm", ["q_learning", "sarsa", "expected_sarsa"])
def test_bootstrap_targets(algorithm: str) -> None:
    epsilon = 0.3
    task = make_task([f"agent.algorithm={algorithm}", "agent.gamma=1.0", f"agent.epsilon_start={epsilon}",
                      f"agent.epsilon_end={epsilon}", "optim.lr=1.0"]).task
    with torch.no_grad():
        task.model.table.copy_(torch.randn(48, 4, generator=torch.Generator().manual_seed(0)))
    task.actions[0] = 0  # up from the start: reward −1
    state, action = int(task.states[0]), 0
    q_before = task.model.table.detach().clone()
    loss = task.train_step().loss  # loss = ½ (target − Q(s, a))²  → target = Q(s, a) ± sqrt(2·loss)
    next_q = q_before[int(task.states[0])]
    expected = {"q_learning": next_q.max(),
                "sarsa": next_q[int(task.actions[0])],
                "expected_sarsa": epsilon / 4 * next_q.sum() + (1 - epsilon) * next_q.max()}[algorithm]
    assert torch.sqrt(2 * loss).item() == pytest.approx(abs(-1 + expected.item() - q_before[state, action].item()),
                                                        abs=1e-5)


def test_sarsa_learns_the_safe_path_and_q_learning_the_edge(tmp_path: Path, capsys) -> None:
    short = QUIET + ["trainer.max_steps=6000", "trainer.eval_every=6000", "trainer.eval_episodes=1"]
    q_result = Trainer(load_config("qlearning/cliffwalking_sarsa", short + ["agent.algorithm=q_learning"]), None).fit()
    assert q_result["eval"]["eval/mean_return"] == -13  # the optimal path along the cliff edge
    run_dir = tmp_path / "sarsa"
    assert main(["train", "qlearning/cliffwalking_sarsa", *short, "--run-dir", str(run_dir), "--json"]) == 0
    sarsa_return = json.loads(capsys.readouterr().out)["eval"]["eval/mean_return"]
    assert -25 <= sarsa_return < -13  # a longer path that keeps away from the cliff

    assert main(["qtable", str(run_dir), "--plot", str(tmp_path / "q.png"), "--rows", "3"]) == 0
    shown = capsys.readouterr().out
    assert "greedy policy of CliffWalking-v1" in shown and "→" in shown and "Q-table (48 states × 4 actions)" in shown
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["qtable", str(run_dir), "--plot", str(tmp_path / "q2"), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)  # the PNG's path inside the JSON, not after it
    assert len(exported["q_table"]) == 48 and len(exported["greedy_policy"]) == 48
    assert exported["png"] == str(tmp_path / "q2.png") and (tmp_path / "q2.png").read_bytes()[:4] == b"\x89PNG"
    cliff = 37  # the cliff's cells end the episode before any update there: nothing learned, no policy
    assert exported["q_table"][cliff] == [0.0] * 4 and exported["greedy_policy"][cliff] is None
    assert exported["greedy_policy"][36] == 0  # the start: up, away from the cliff


@pytest.mark.parametrize("arguments, message", [
    (["--rows", "-3"], "--rows must be 0 or more, got -3"),
    (["--plot", "q.txt"], "--plot q.txt: the file must end in .png, .avif, .eps"),
    (["--plot", "/proc/q.png"], "--plot /proc/q.png: cannot write there"),
])
def test_qtable_bad_options_are_one_line_before_any_output(tmp_path: Path, capsys, arguments: list[str],
                                                          message: str) -> None:
    run_dir = tmp_path / "lake"
    assert main(["train", "qlearning/frozenlake", *QUIET, "trainer.max_steps=200", "trainer.eval_every=200",
                 "trainer.eval_episodes=1", "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["qtable", str(run_dir), *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"error: {message}") and captured.err.count("\n") == 1


def test_tabular_resume_is_bitwise(tmp_path: Path) -> None:
    from tests.test_resume import assert_same_run, interrupted_then_resumed, run

    overrides = QUIET + ["trainer.max_steps=3000", "trainer.eval_every=1000", "trainer.checkpoint_every=1000",
                         "trainer.log_every=500", "trainer.eval_episodes=1"]
    run("qlearning/cliffwalking_sarsa", overrides, tmp_path / "unbroken")
    interrupted_then_resumed("qlearning/cliffwalking_sarsa", overrides, tmp_path / "resumed", 1234)
    assert_same_run(tmp_path / "unbroken", tmp_path / "resumed")


def test_continuous_envs_and_momentum_are_refused() -> None:
    with pytest.raises(LabError, match="needs Discrete observations"):
        make_task(["env.id=CartPole-v1", "env.kwargs={}"])
    with pytest.raises(LabError, match="plain SGD"):
        make_task(["optim.momentum=0.9"])


def test_a_checkpoint_from_before_the_env_runner_resumes_the_same_way() -> None:
    trained = make_task([]).task
    for _ in range(7):
        trained.train_step()
    state = trained.state_dict()
    runner = state["runner"]
    old_format = {"generator": state["generator"], "states": runner["obs"], "actions": state["actions"],
                  "autoreset": runner["autoreset"], "episode_return": runner["episode_return"],
                  "env_steps": runner["env_steps"], "envs": runner["envs"]}
    continued = []
    for saved in (state, old_format):
        task = make_task([]).task
        task.load_state_dict(saved)
        losses = [task.train_step().loss.detach().item() for _ in range(5)]
        continued.append((losses, task.states.tolist(), task.runner.env_steps))
        task.close()
    trained.close()
    assert continued[0] == continued[1] and continued[0][2] == 12 * trained.runner.num_envs
