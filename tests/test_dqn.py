"""DQN correctness against hand computations: n-step targets in the replay buffer (terminations, truncations,
autoreset rows, the newest-row frontier, wrap-around), the sum tree and prioritized sampling, Double DQN
targets, the dueling head, ε schedules, target-network updates, short end-to-end runs under the Trainer, and the
main job solving CartPole."""
import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import copy
import math

import pytest
import torch
from torch import nn

from agents.dqn import DQN, DQNAgentConfig, td_targets
from agents.exploration import epsilon_at
from agents.networks import MLP, QNetwork
from agents.replay import ReplayBuffer, SumTree
from lab.config import load_config
from lab.trainer import Trainer

GAMMA = 0.9
CPU = torch.device("cpu")


# --- a handcrafted replay buffer ------------------------------------------------------------------------------
# Two envs, n = 3, γ = 0.9. Observation ids: obs(t, e) = 100·e + t and next_obs(t, e) = 1000 + 100·e + t, so
# the bootstrap state a sample returns names the row it came from. Rewards per row (env 0, env 1):
#   t0: (1, 10)
#   t1: (2, 20)     env 1 truncated
#   t2: (3, 999)    env 0 terminated; env 1 autoreset (999 would show if a walk ever entered it)
#   t3: (999, 40)   env 0 autoreset
#   t4: (5, 50)
#   t5: (6, 60)
#   t6: (7, 70)     newest row, both episodes still running
ROWS = [
    # rewards, terminated, truncated, valid
    ((1.0, 10.0), (False, False), (False, False), (True, True)),
    ((2.0, 20.0), (False, False), (False, True), (True, True)),
    ((3.0, 999.0), (True, False), (False, False), (True, False)),
    ((999.0, 40.0), (False, False), (False, False), (False, True)),
    ((5.0, 50.0), (False, False), (False, False), (True, True)),
    ((6.0, 60.0), (False, False), (False, False), (True, True)),
    ((7.0, 70.0), (False, False), (False, False), (True, True)),
]
AUTORESET = {(2, 1), (3, 0)}

# (row, env) -> (n-step return, bootstrap factor, row of the bootstrap state), all worked out by hand.
EXPECTED = {
    (0, 0): (5.23, 0.0, 2),  # 1 + 0.9·2 + 0.81·3 = 1 + 1.8 + 2.43; the episode terminated at t2: no bootstrap
    (1, 0): (4.7, 0.0, 2),  # 2 + 0.9·3; terminated
    (2, 0): (3.0, 0.0, 2),  # 3; terminated
    (4, 0): (16.07, 0.729, 6),  # 5 + 0.9·6 + 0.81·7 = 5 + 5.4 + 5.67; three full steps: γ³ = 0.729
    (5, 0): (12.3, 0.81, 6),  # 6 + 0.9·7; cut at the newest row after two steps: γ² = 0.81
    (6, 0): (7.0, 0.9, 6),  # 7; the newest row itself: γ¹
    (0, 1): (28.0, 0.81, 1),  # 10 + 0.9·20; truncated at t1, so bootstrap from next_obs(t1) with γ²
    (1, 1): (20.0, 0.9, 1),  # 20; truncated: γ¹
    (3, 1): (133.6, 0.729, 5),  # 40 + 0.9·50 + 0.81·60 = 40 + 45 + 48.6
    (4, 1): (160.7, 0.729, 6),  # 50 + 0.9·60 + 0.81·70 = 50 + 54 + 56.7
    (5, 1): (123.0, 0.81, 6),  # 60 + 0.9·70; newest-row frontier
    (6, 1): (70.0, 0.9, 6),  # 70
}


def add_row(buffer: ReplayBuffer, t: int, rewards: tuple[float, ...], terminated: tuple[bool, ...],
            truncated: tuple[bool, ...], valid: tuple[bool, ...]) -> None:
    env = torch.arange(buffer.num_envs)
    buffer.add(obs=(100.0 * env + t).unsqueeze(1), actions=(env + t) % 2, rewards=torch.tensor(rewards),
               next_obs=(1000.0 + 100 * env + t).unsqueeze(1), terminated=torch.tensor(terminated),
               truncated=torch.tensor(truncated), valid=torch.tensor(valid))


def handcrafted_buffer(prioritized: bool = False) -> ReplayBuffer:
    buffer = ReplayBuffer(20, 2, (1,), torch.float32, CPU, n_step=3, gamma=GAMMA, prioritized=prioritized)
    for t, row in enumerate(ROWS):
        add_row(buffer, t, *row)
    return buffer


def check_n_step(buffer: ReplayBuffer, expected: dict) -> None:
    keys = list(expected)
    row = torch.tensor([r for r, _ in keys])
    env = torch.tensor([e for _, e in keys])
    returns, last_row, bootstrap = buffer._n_step(row * buffer.num_envs + env)
    want = torch.tensor([v for v in expected.values()], dtype=torch.float64)
    torch.testing.assert_close(returns.double(), want[:, 0], rtol=0, atol=1e-4)
    torch.testing.assert_close(bootstrap.double(), want[:, 1], rtol=0, atol=1e-6)
    assert last_row.tolist() == want[:, 2].long().tolist()


def test_n_step_returns_match_hand_computation() -> None:
    buffer = handcrafted_buffer()
    assert buffer.rows == 10 and len(buffer) == 14  # 7 rows written, autoreset slots included
    check_n_step(buffer, EXPECTED)


def test_sampled_batches_carry_the_hand_computed_targets() -> None:
    buffer = handcrafted_buffer()
    batch = buffer.sample(2000, torch.Generator().manual_seed(0))
    seen = set()
    for i in range(2000):
        row, env = divmod(int(batch.index[i]), 2)
        returns, bootstrap, last_row = EXPECTED[(row, env)]  # KeyError: an invalid or unwritten slot was drawn
        seen.add((row, env))
        assert batch.obs[i].item() == 100 * env + row
        assert batch.actions[i].item() == (env + row) % 2
        assert batch.next_obs[i].item() == 1000 + 100 * env + last_row
        assert batch.returns[i].item() == pytest.approx(returns, abs=1e-4)
        assert batch.bootstrap[i].item() == pytest.approx(bootstrap, abs=1e-6)
    assert seen == set(EXPECTED)  # uniform over the 12 valid slots: every one shows up
    assert torch.equal(batch.weights, torch.ones(2000))


def test_n_step_walk_wraps_around_a_full_buffer() -> None:
    # One env, 4 rows, rewards r_t = t + 1 for t = 0..5: t4 and t5 overwrite rows 0 and 1, so row 1 is the
    # newest and row 2 (t2) the oldest. Walks from rows 2 and 3 wrap past the end of the storage.
    buffer = ReplayBuffer(4, 1, (1,), torch.float32, CPU, n_step=3, gamma=GAMMA)
    for t in range(6):
        add_row(buffer, t, (t + 1.0,), (False,), (False,), (True,))
    assert buffer.full and buffer.row == 2 and len(buffer) == 4
    check_n_step(buffer, {
        (2, 0): (10.65, 0.729, 0),  # t2..t4: 3 + 0.9·4 + 0.81·5 = 3 + 3.6 + 4.05
        (3, 0): (13.36, 0.729, 1),  # t3..t5: 4 + 0.9·5 + 0.81·6 = 4 + 4.5 + 4.86
        (0, 0): (10.4, 0.81, 1),  # t4, t5: 5 + 0.9·6, then the newest row
        (1, 0): (6.0, 0.9, 1),  # t5 alone
    })


@pytest.mark.parametrize("end, bootstrap", [("terminated", 0.0), ("truncated", 0.81)])
def test_truncation_bootstraps_with_gamma_power_termination_does_not(end: str, bootstrap: float) -> None:
    # Rewards 1, 2 with the episode ending at t1, an autoreset row, then a new episode.
    buffer = ReplayBuffer(10, 1, (1,), torch.float32, CPU, n_step=3, gamma=GAMMA)
    ended = (end == "terminated", end == "truncated")
    add_row(buffer, 0, (1.0,), (False,), (False,), (True,))
    add_row(buffer, 1, (2.0,), (ended[0],), (ended[1],), (True,))
    add_row(buffer, 2, (999.0,), (False,), (False,), (False,))
    add_row(buffer, 3, (4.0,), (False,), (False,), (True,))
    check_n_step(buffer, {
        (0, 0): (2.8, bootstrap, 1),  # 1 + 0.9·2; γ² = 0.81 if truncated, 0 if terminated
        (1, 0): (2.0, bootstrap / GAMMA, 1),  # 2; γ¹ = 0.9 if truncated
        (3, 0): (4.0, 0.9, 3),  # the newest row
    })
    batch = buffer.sample(300, torch.Generator().manual_seed(1))
    from_row0 = batch.index == 0
    assert from_row0.any()
    assert torch.equal(batch.next_obs[from_row0], torch.full((int(from_row0.sum()), 1), 1001.0))


@pytest.mark.parametrize("prioritized", [False, True])
def test_autoreset_and_unwritten_slots_are_never_sampled(prioritized: bool) -> None:
    buffer = handcrafted_buffer(prioritized)
    if prioritized:
        # Large TD errors on every slot, autoreset and unwritten ones included: they must keep priority 0.
        buffer.update_priorities(torch.arange(20), torch.full((20,), 50.0))
        leaves = buffer.tree.leaves().view(10, 2)
        for row, env in AUTORESET:
            assert leaves[row, env] == 0
        assert torch.all(leaves[7:] == 0)
    generator = torch.Generator().manual_seed(2)
    drawn = torch.cat([buffer.sample(500, generator).index for _ in range(10)])
    slots = {divmod(int(i), 2) for i in drawn.unique()}
    assert slots == set(EXPECTED)
    assert not slots & AUTORESET


# --- sum tree and prioritized replay ---------------------------------------------------------------------------
def test_sum_tree_totals_follow_updates() -> None:
    tree = SumTree(5, CPU)  # 8 leaves, 3 of them padding
    assert tree.leaf_base == 8 and tree.depth == 3
    tree.update(torch.arange(5), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert tree.total.item() == 15.0
    assert (tree.nodes[2].item(), tree.nodes[3].item()) == (10.0, 5.0)  # leaves 0..3 | leaf 4 + padding
    tree.update(torch.tensor([2, 4]), torch.tensor([0.5, 0.0]))
    assert tree.total.item() == 7.5  # 1 + 2 + 0.5 + 4 + 0
    assert tree.leaves().tolist() == [1.0, 2.0, 0.5, 4.0, 0.0]


def test_sum_tree_find_uses_half_open_prefix_intervals() -> None:
    tree = SumTree(5, CPU)
    tree.update(torch.arange(5), torch.tensor([1.0, 2.0, 0.5, 4.0, 5.0]))
    # Prefix intervals: [0, 1) [1, 3) [3, 3.5) [3.5, 7.5) [7.5, 12.5)
    mass = torch.tensor([0.0, 0.999, 1.0, 2.999, 3.0, 3.499, 3.5, 7.499, 7.5, 12.499])
    assert tree.find(mass).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    tree.update(torch.tensor([1]), torch.tensor([0.0]))  # a zero-priority leaf has an empty interval
    # Now: [0, 1) [1, 1) [1, 1.5) [1.5, 5.5) [5.5, 10.5)
    mass = torch.tensor([0.999, 1.0, 1.499, 1.5, 5.5, 10.499])
    assert tree.find(mass).tolist() == [0, 2, 2, 3, 4, 4]


def test_prioritized_sampling_proportions_and_importance_weights() -> None:
    # Two envs, five rows: env 1 terminates at t1, so (2, 1) is an autoreset slot with priority 0.
    alpha, beta = 0.6, 0.5
    buffer = ReplayBuffer(10, 2, (1,), torch.float32, CPU, prioritized=True, alpha=alpha)
    for t in range(4):
        add_row(buffer, t, (1.0, 1.0), (False, t == 1), (False, False), (True, t != 2))
    # Slots 0..7 entered with max_priority^α = 1^α = 1. Four get TD errors δ: priority (|δ| + ε)^α.
    updated = torch.tensor([0, 3, 6, 7])
    td_error = torch.tensor([4.0, -0.5, 10.0, 0.0])
    buffer.update_priorities(updated, td_error)
    add_row(buffer, 4, (1.0, 1.0), (False, False), (False, False), (True, True))  # enter at (10 + ε)^α
    priority = torch.ones(10, dtype=torch.float64)
    priority[updated] = (td_error.abs().double() + 1e-6) ** alpha  # 4^0.6 ≈ 2.297, 0.5^0.6 ≈ 0.660, …
    priority[5] = 0.0  # slot (2, 1): autoreset
    priority[8:] = (10 + 1e-6) ** alpha  # the largest priority so far, ≈ 3.981
    prob = priority / priority.sum()
    # Slots 1, 2, 4 keep 1; slot 7 has δ = 0: (1e-6)^0.6.
    assert prob[0].item() == pytest.approx(4 ** 0.6 / (4 ** 0.6 + 0.5 ** 0.6 + 3 * 10 ** 0.6 + 1e-6 ** 0.6 + 3),
                                           rel=1e-6)

    generator = torch.Generator().manual_seed(3)
    counts = torch.zeros(10, dtype=torch.float64)
    for _ in range(100):  # 100 batches of 200: 20,000 draws
        batch = buffer.sample(200, generator, beta=beta)
        counts += torch.bincount(batch.index, minlength=10).double()
        expected_weights = (len(buffer) * prob[batch.index]) ** -beta
        expected_weights /= expected_weights.max()
        torch.testing.assert_close(batch.weights.double(), expected_weights, rtol=1e-5, atol=1e-6)
    assert counts[5] == 0
    assert (counts / counts.sum() - prob).abs().max().item() < 0.01


# --- targets and networks -----------------------------------------------------------------------------------
class FixedQ(nn.Module):
    """Q-values from a table: observation i (a float id) gets row i."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.table = torch.tensor(table)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.table[obs.long().squeeze(1)]


def test_double_dqn_evaluates_the_online_argmax_with_the_target_network() -> None:
    online = FixedQ([[1.0, 5.0, 3.0], [0.0, 0.0, 9.0], [2.0, 1.0, 0.0]])  # argmax: 1, 2, 0
    target = FixedQ([[4.0, 2.0, 6.0], [7.0, 1.0, 3.0], [8.0, 9.0, 4.0]])  # argmax: 2, 0, 1
    next_obs = torch.tensor([[0.0], [1.0], [2.0]])
    returns = torch.tensor([1.0, 2.0, 3.0])
    bootstrap = torch.tensor([0.81, 0.5, 0.0])
    double = td_targets(online, target, next_obs, returns, bootstrap, double=True)
    vanilla = td_targets(online, target, next_obs, returns, bootstrap, double=False)
    # double: 1 + 0.81·target[0, 1] = 1 + 0.81·2; 2 + 0.5·target[1, 2] = 2 + 0.5·3; terminal: 3
    torch.testing.assert_close(double, torch.tensor([2.62, 3.5, 3.0]))
    # vanilla: 1 + 0.81·max(4, 2, 6); 2 + 0.5·max(7, 1, 3); terminal: 3
    torch.testing.assert_close(vanilla, torch.tensor([5.86, 5.5, 3.0]))


def test_dueling_head_is_value_plus_centred_advantage() -> None:
    torso = MLP((2,), hidden=[])  # just Flatten: the features are the observation itself
    dueling = QNetwork(torso, n_actions=3, dueling=True)
    plain = QNetwork(torso, n_actions=3, dueling=False)
    advantage_weight, advantage_bias = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0.0, 0.0, 1.0])
    with torch.no_grad():
        plain.head.weight.copy_(advantage_weight)
        plain.head.bias.copy_(advantage_bias)
        # The dueling head's first output is V, the rest are A.
        dueling.head.weight.copy_(torch.cat([torch.tensor([[2.0, -1.0]]), advantage_weight]))
        dueling.head.bias.copy_(torch.cat([torch.tensor([0.5]), advantage_bias]))
    obs = torch.tensor([[1.0, 2.0]])
    # A = (1, 2, 1 + 2 + 1) = (1, 2, 4), mean 7/3; V = 2·1 − 1·2 + 0.5 = 0.5; Q = V + A − mean(A)
    expected = torch.tensor([[0.5 + 1 - 7 / 3, 0.5 + 2 - 7 / 3, 0.5 + 4 - 7 / 3]])
    torch.testing.assert_close(dueling(obs), expected)
    torch.testing.assert_close(plain(obs), torch.tensor([[1.0, 2.0, 4.0]]))
    assert set(dueling.state_dict()) == {"head.weight", "head.bias"}  # the centring map is no weight


@pytest.mark.parametrize("dueling", [False, True])
def test_q_values_stay_fp32_under_bf16_autocast(dueling: bool) -> None:
    """Under autocast the torso runs in bf16 but the head does not: close action values must not tie."""
    torch.manual_seed(0)
    network = QNetwork(MLP((4,), hidden=[16]), n_actions=3, dueling=dueling)
    with torch.no_grad():  # three actions 1e-3 apart around 0.75, closer than bf16 resolves there (2⁻⁸)
        network.head.weight.zero_()
        network.head.bias.copy_(torch.tensor([0.75, 0.751, 0.752] if not dueling else [0.75, 0.0, 0.001, 0.002]))
    obs = torch.randn(5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q_values = network(obs)
    assert q_values.dtype == torch.float32
    assert (q_values.argmax(dim=1) == 2).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = network.torso(obs)
    torch.testing.assert_close(q_values, network._q_values(features.float()))


def test_linear_epsilon_schedule() -> None:
    cfg = DQNAgentConfig(epsilon_start=1.0, epsilon_end=0.1, exploration_fraction=0.5)
    # Decays over 0.5 · 1000 = 500 steps, then stays at the end value.
    values = [epsilon_at(step, 1000, cfg) for step in (0, 250, 500, 900)]
    assert values == pytest.approx([1.0, 0.55, 0.1, 0.1])


def test_exponential_epsilon_schedule() -> None:
    cfg = DQNAgentConfig(epsilon_schedule="exponential", epsilon_start=1.0, epsilon_end=0.1,
                         epsilon_decay_steps=100)
    # ε = 0.1 + 0.9·e^(−step / 100)
    values = [epsilon_at(step, 1000, cfg) for step in (0, 100, 200)]
    assert values == pytest.approx([1.0, 0.1 + 0.9 / math.e, 0.1 + 0.9 / math.e ** 2])
    assert values[1] == pytest.approx(0.431091, abs=1e-6)


# --- the task ---------------------------------------------------------------------------------------------------
def make_task(overrides: list[str]) -> DQN:
    return DQN(load_config("dqn/cartpole", overrides), CPU, None, None)


def test_hard_target_update_copies_only_every_interval(tiny_dqn: list[str]) -> None:
    task = make_task(tiny_dqn + ["agent.target_update=hard", "agent.target_update_interval=3"])
    before = copy.deepcopy(task.target.state_dict())
    with torch.no_grad():
        for p in task.model.parameters():
            p.add_(1.0)
    for updates in (1, 2):
        task.after_update(updates)
        assert all(torch.equal(task.target.state_dict()[k], v) for k, v in before.items())
    task.after_update(3)
    assert all(torch.equal(task.target.state_dict()[k], v) for k, v in task.model.state_dict().items())
    task.close()


def test_polyak_target_update_moves_tau_of_the_way(tiny_dqn: list[str]) -> None:
    task = make_task(tiny_dqn + ["agent.target_update=polyak", "agent.tau=0.25"])
    before = copy.deepcopy(task.target.state_dict())
    with torch.no_grad():
        for p in task.model.parameters():
            p.add_(1.0)  # online = target + 1 everywhere
    task.after_update(1)
    for name, value in task.target.state_dict().items():  # target + 0.25·(online − target) = target + 0.25
        torch.testing.assert_close(value, before[name] + 0.25)
    task.close()


def test_learning_starts_below_batch_size_still_collects(tiny_dqn: list[str]) -> None:
    # Updates fall due from the first step, but no batch can be drawn until 64 slots are written: the task must
    # keep stepping the envs meanwhile instead of returning zero steps forever.
    task = make_task(tiny_dqn + ["agent.learning_starts=0", "agent.batch_size=64", "env.num_envs=1",
                                 "agent.train_frequency=1"])
    losses = [task.train_step().loss for _ in range(200)]
    task.close()
    assert task.env_steps >= 64
    assert any(loss is not None for loss in losses)


def test_fresh_episodes_after_restore_cut_n_step_returns(tiny_dqn: list[str]) -> None:
    overrides = tiny_dqn + ["agent.n_step=3", "env.num_envs=1", "agent.gamma=0.99"]
    task = make_task(overrides)
    for _ in range(5):  # t0..t4, well inside CartPole's first episode and before learning starts
        task.train_step()
    assert not task.buffer.episode_end[:5].any()
    state = task.state_dict()
    state["runner"]["envs"] = None  # what state_dict holds for envs backed by native engines (Box2D, ALE)
    task.close()
    resumed = make_task(overrides)
    resumed.load_state_dict(state)
    for _ in range(3):  # t5..t7 belong to a new episode
        resumed.train_step()
    returns, last_row, bootstrap = resumed.buffer._n_step(torch.tensor([4 * resumed.buffer.num_envs]))  # (t4, env 0)
    resumed.close()
    # t4 ended its episode from the buffer's point of view: a one-step return with γ¹ from next_obs(t4).
    assert (returns.item(), last_row.item(), bootstrap.item()) == pytest.approx((1.0, 4, 0.99))


# --- end to end under the Trainer --------------------------------------------------------------------------------
def fit(overrides: list[str]) -> tuple[Trainer, dict]:
    trainer = Trainer(load_config("dqn/cartpole", overrides), None)
    initial = [p.detach().clone() for p in trainer.task.model.parameters()]
    result = trainer.fit()
    assert result["step"] == 400
    assert trainer.updates > 0
    assert all(math.isfinite(v) for v in result["eval"].values())
    assert result["eval"]["eval/episodes"] == 2
    assert any(not torch.equal(a, b) for a, b in zip(initial, trainer.task.model.parameters()))
    return trainer, result


@pytest.mark.parametrize("target_update", ["polyak", "hard"])
def test_prioritized_n_step_dueling_run_end_to_end(tiny_dqn: list[str], target_update: str) -> None:
    trainer, _ = fit(tiny_dqn + ["trainer.max_steps=400", "agent.prioritized=true", "agent.n_step=3",
                                 "model.dueling=true", f"agent.target_update={target_update}",
                                 "agent.target_update_interval=20"])
    assert trainer.task.buffer.tree is not None and trainer.task.model.dueling


@pytest.mark.parametrize("optim, optimizer_class", [
    (["optim.name=sgd", "optim.momentum=0.9", "optim.nesterov=true", "optim.lr=0.01"], torch.optim.SGD),
    (["optim.name=rmsprop", "optim.lr=0.001"], torch.optim.RMSprop),
])
def test_trainer_runs_dqn_with_sgd_nesterov_and_rmsprop(tiny_dqn: list[str], optim: list[str],
                                                       optimizer_class: type) -> None:
    trainer, _ = fit(tiny_dqn + ["trainer.max_steps=400"] + optim)
    assert type(trainer.optimizer) is optimizer_class
    group = trainer.optimizer.param_groups[0]
    if optimizer_class is torch.optim.SGD:
        assert group["nesterov"] and group["momentum"] == 0.9


def test_the_main_job_solves_cartpole_within_16k_steps() -> None:
    """configs/dqn/cartpole.yaml as the quick start runs it, judged as bench/cartpole_vs_sb3.py judges: a greedy
    20-episode evaluation every 2k steps must reach a mean of 475. Seeds 0–19 solved within 14k steps (seed 3 at
    6k; at RL-Zoo's lr 2.3e-3 and γ 0.99 it took 28k), so a change that slows learning fails here rather than only
    in the benchmark."""
    trainer = Trainer(load_config("dqn/cartpole", [
        "seed=3", "device=cpu", "tracking.mode=disabled", "trainer.progress=false",
        "trainer.eval_every=2000", "trainer.eval_episodes=20", "trainer.stop_at=475"]), None)

    def stop_at_16k(t: Trainer) -> None:  # not trainer.max_steps, which also sets the length of the ε schedule
        if t.step >= 16_000:
            t.early_stop_reason = "16k steps"
    trainer.callbacks.append(stop_at_16k)
    result = trainer.fit()
    assert result["eval"]["eval/mean_return"] >= 475, f"not solved in {result['step']:,} steps: {result['eval']}"
    assert result["step"] <= 16_000
