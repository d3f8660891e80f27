"""PQN: Q(λ) returns against hand computations, autoreset steps kept out of the loss, learning CartPole under the
Trainer, and a bitwise resume in the middle of a rollout's minibatches."""
import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from pathlib import Path

import pytest
import torch

from agents.pqn import PQN, lambda_returns
from lab.config import load_config
from lab.distributed import DistInfo
from lab.errors import LabError
from lab.trainer import Trainer
from tests.test_resume import assert_same_run, interrupted_then_resumed, run

TINY_PQN = ["device=cpu", "tracking.mode=disabled", "trainer.progress=false", "env.num_envs=4",
            "agent.rollout_steps=8", "agent.minibatches=2", "agent.epochs=2", "model.hidden=[32,32]",
            "trainer.max_steps=640", "trainer.eval_every=320", "trainer.eval_episodes=2",
            "trainer.checkpoint_every=160", "trainer.log_every=64"]

# A rollout of T = 4 steps in N = 2 envs; γ = 0.9, λ = 0.5. next_max_q[t] stands for max_a Q(s_{t+1}, a).
#   env 0: rewards 1, 2, 3, 4; the episode runs on through the whole rollout.
#   env 1: rewards 1, 1, 0, 5; truncated at t1 (bootstrap, but no λ-chain past it), t2 is the autoreset step,
#          terminated at t3 (no bootstrap).
REWARDS = [[1.0, 1.0], [2.0, 1.0], [3.0, 0.0], [4.0, 5.0]]
TERMINAL = [[False, False], [False, False], [False, False], [False, True]]
EPISODE_END = [[False, False], [False, True], [False, False], [False, True]]
NEXT_MAX_Q = [[10.0, 10.0], [20.0, 8.0], [30.0, 7.0], [40.0, 50.0]]
EXPECTED = [
    # env 0: G3 = 4 + 0.9·40 = 40; G2 = 3 + 0.9·(0.5·40 + 0.5·30) = 34.5; G1 = 2 + 0.9·(0.5·34.5 + 0.5·20) = 26.525;
    #        G0 = 1 + 0.9·(0.5·26.525 + 0.5·10) = 17.43625
    # env 1: G3 = 5 (terminal); G2 = 0 + 0.9·(0.5·5 + 0.5·7) = 5.4; G1 = 1 + 0.9·8 = 8.2 (truncated: Q alone);
    #        G0 = 1 + 0.9·(0.5·8.2 + 0.5·10) = 9.19
    [17.43625, 9.19], [26.525, 8.2], [34.5, 5.4], [40.0, 5.0],
]


def tensors(*rows: list) -> list[torch.Tensor]:
    return [torch.tensor(r) for r in rows]


def test_lambda_returns_match_a_hand_computation() -> None:
    rewards, terminal, episode_end, next_max_q = tensors(REWARDS, TERMINAL, EPISODE_END, NEXT_MAX_Q)
    returns = lambda_returns(rewards, terminal, episode_end, next_max_q, gamma=0.9, td_lambda=0.5)
    torch.testing.assert_close(returns, torch.tensor(EXPECTED))


def test_lambda_zero_is_one_step_q_learning_and_one_is_monte_carlo() -> None:
    rewards, terminal, episode_end, next_max_q = tensors(REWARDS, TERMINAL, EPISODE_END, NEXT_MAX_Q)
    one_step = lambda_returns(rewards, terminal, episode_end, next_max_q, gamma=0.9, td_lambda=0.0)
    torch.testing.assert_close(one_step, rewards + 0.9 * (~terminal).float() * next_max_q)
    monte_carlo = lambda_returns(rewards, terminal, episode_end, next_max_q, gamma=0.9, td_lambda=1.0)
    # env 0: discounted rewards to the rollout's end, then the last bootstrap: 1 + 0.9·2 + 0.81·3 + 0.729·(4 + 0.9·40)
    assert monte_carlo[0, 0].item() == pytest.approx(1 + 1.8 + 2.43 + 0.729 * 40)
    assert monte_carlo[0, 1].item() == pytest.approx(1 + 0.9 * (1 + 0.9 * 8))  # cut at the truncation


def make_pqn(overrides: list[str]) -> PQN:
    config = load_config("pqn/cartpole", overrides)
    return PQN(config, torch.device("cpu"), None, DistInfo())


def test_autoreset_steps_carry_no_weight() -> None:
    task = make_pqn(TINY_PQN + ["agent.rollout_steps=64"])  # 64 steps: random CartPole episodes end inside
    task.collect_rollout()
    valid = task.rollout["valid"].view(64, 4).bool()
    task.close()  # the rollout stays: the loss below needs no env
    # An autoreset step follows every episode end, so some steps are invalid, and never two in a row.
    assert (~valid).any() and valid.any()
    assert not ((~valid[1:]) & (~valid[:-1])).any()
    # Whatever target an autoreset step carries, the loss is the same: it weighs nothing.
    task.order = torch.arange(len(task.rollout["actions"])).repeat(task.cfg.epochs)  # one minibatch: all of it
    task.minibatch_size, task.next_minibatch = len(task.rollout["actions"]), 0
    loss = task.train_step().loss
    task.next_minibatch = 0
    task.rollout["returns"] = torch.where(task.rollout["valid"].bool(), task.rollout["returns"], 1e6)
    assert torch.allclose(task.train_step().loss, loss)


def test_each_epoch_is_one_pass_over_the_rollout() -> None:
    # 4 envs × 10 steps = 40 samples in 3 minibatches of 13: each epoch draws 39 distinct samples of one
    # permutation, and the minibatches of different epochs never mix permutations.
    task = make_pqn(TINY_PQN + ["agent.rollout_steps=10", "agent.minibatches=3", "agent.epochs=2"])
    drawn = []
    original_model = task.model
    task.model = lambda obs: (drawn.append(obs), original_model(obs))[1]  # record each minibatch's observations
    for _ in range(6):
        task.train_step()
    task.model = original_model
    task.close()
    minibatches = drawn[11:]  # the first 11 calls act during the rollout (10 steps + the bootstrap)
    assert [len(m) for m in minibatches] == [13] * 6
    for epoch in (minibatches[:3], minibatches[3:]):
        rows = torch.cat(epoch)
        assert len(torch.unique(rows, dim=0)) == 39


def test_too_many_minibatches_is_a_clear_error() -> None:
    with pytest.raises(LabError, match="agent.minibatches"):
        make_pqn(TINY_PQN + ["agent.minibatches=100"])


def test_pqn_learns_cartpole() -> None:
    overrides = ["device=cpu", "tracking.mode=disabled", "trainer.progress=false", "trainer.max_steps=80000",
                 "trainer.eval_every=10000", "trainer.stop_at=200"]
    result = Trainer(load_config("pqn/cartpole", overrides), None).fit()
    assert result["best"] >= 150, result  # random play scores about 20


def test_pqn_resume_mid_rollout_is_bitwise(tmp_path: Path) -> None:
    run("pqn/cartpole", TINY_PQN, tmp_path / "unbroken")
    # 4 envs × 8 steps = 32 env steps per rollout and 4 updates each: stop (at step 224 = 7 rollouts) after the
    # update that collected the 7th rollout, with 3 of its updates still to come.
    interrupted_then_resumed("pqn/cartpole", TINY_PQN, tmp_path / "resumed", 224)
    assert_same_run(tmp_path / "unbroken", tmp_path / "resumed")


def test_a_generator_state_from_another_device_type_is_a_clear_error() -> None:
    from lab.seeding import restore_generator

    cuda_like_state = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state is 16 bytes, a CPU one's 5056
    with pytest.raises(LabError, match="another kind of device than cpu"):
        restore_generator(torch.Generator(), cuda_like_state, "exploration")
    state = torch.Generator().manual_seed(3).get_state()
    generator = torch.Generator()
    restore_generator(generator, state, "exploration")
    assert torch.equal(generator.get_state(), state)
