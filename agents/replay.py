"""Replay memory on the training device: uniform or prioritized sampling, n-step targets, no Python loops
over the batch.

Transitions are stored time-major, one column per vector env: slot (t, e) holds the step env e took at
time t. N-step returns are assembled at sampling time by walking forward along a column until the episode
ends or the newest written step is reached, so partial returns near the end stay correct.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class SumTree:
    """Binary tree of priorities (leaves) and their sums (inner nodes), in one flat tensor on the device.

    Updating and sampling walk the tree level by level, vectorised across the batch (log₂ N tensor ops).
    """

    def __init__(self, size: int, device: torch.device) -> None:
        self.size = size
        self.leaf_base = 1 << max(0, (size - 1).bit_length())  # leaves live at [leaf_base, leaf_base + size)
        self.depth = self.leaf_base.bit_length() - 1
        self.nodes = torch.zeros(2 * self.leaf_base, dtype=torch.float64, device=device)

    @property
    def total(self) -> torch.Tensor:
        return self.nodes[1]

    def leaves(self) -> torch.Tensor:
        return self.nodes[self.leaf_base:self.leaf_base + self.size]

    def update(self, index: torch.Tensor, priority: torch.Tensor) -> None:
        node = index + self.leaf_base
        self.nodes[node] = priority.to(self.nodes.dtype)
        for _ in range(self.depth):  # recompute each ancestor from its children; duplicates write equal values
            node = node // 2
            self.nodes[node] = self.nodes[2 * node] + self.nodes[2 * node + 1]

    def find(self, mass: torch.Tensor) -> torch.Tensor:
        """Leaf index whose prefix-sum interval contains each `mass` value."""
        node = torch.ones_like(mass, dtype=torch.long)
        mass = mass.to(self.nodes.dtype)
        for _ in range(self.depth):
            left = self.nodes[2 * node]
            go_right = mass >= left
            mass = torch.where(go_right, mass - left, mass)
            node = 2 * node + go_right.long()
        return (node - self.leaf_base).clamp_(max=self.size - 1)


@dataclass
class Batch:
    obs: torch.Tensor
    actions: torch.Tensor
    returns: torch.Tensor  # n-step discounted reward sum
    next_obs: torch.Tensor  # observation after the last summed step (bootstrap state)
    bootstrap: torch.Tensor  # γ^m where the episode continues after m steps, 0 where it terminated
    weights: torch.Tensor  # importance-sampling weights (ones for uniform replay)
    index: torch.Tensor  # flat slot index, for priority updates


class ReplayBuffer:
    def __init__(self, capacity: int, num_envs: int, obs_shape: tuple[int, ...], obs_dtype: torch.dtype,
                 device: torch.device, n_step: int = 1, gamma: float = 0.99, prioritized: bool = False,
                 alpha: float = 0.6, priority_eps: float = 1e-6) -> None:
        self.rows = max(capacity // num_envs, n_step + 1)
        self.num_envs, self.device = num_envs, device
        self.n_step, self.gamma = n_step, gamma
        shape = (self.rows, num_envs)
        self.obs = torch.zeros(shape + obs_shape, dtype=obs_dtype, device=device)
        self.next_obs = torch.zeros_like(self.obs)
        self.actions = torch.zeros(shape, dtype=torch.long, device=device)
        self.rewards = torch.zeros(shape, dtype=torch.float32, device=device)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=device)
        self.episode_end = torch.zeros(shape, dtype=torch.bool, device=device)  # terminated or truncated
        self.valid = torch.zeros(shape, dtype=torch.bool, device=device)  # written, and not an autoreset step
        self.row = 0  # next row to write
        self.full = False
        self.prioritized, self.alpha, self.priority_eps = prioritized, alpha, priority_eps
        self.tree = SumTree(self.rows * num_envs, device) if prioritized else None
        self.max_priority = torch.tensor(1.0, dtype=torch.float64, device=device)  # new samples get it

    def __len__(self) -> int:
        """Slots written so far (autoreset slots included; they are never sampled)."""
        return (self.rows if self.full else self.row) * self.num_envs

    def add(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
            terminated: torch.Tensor, truncated: torch.Tensor, valid: torch.Tensor) -> None:
        """One row: a step of every env. `valid` is False for Gymnasium's autoreset steps, which are no transition."""
        r = self.row
        self.obs[r], self.next_obs[r], self.actions[r] = obs, next_obs, actions
        self.rewards[r], self.terminated[r] = rewards, terminated
        self.episode_end[r] = terminated | truncated
        self.valid[r] = valid
        if self.tree is not None:
            index = r * self.num_envs + torch.arange(self.num_envs, device=self.device)
            self.tree.update(index, valid.double() * self.max_priority ** self.alpha)
        self.row = (r + 1) % self.rows
        self.full = self.full or self.row == 0

    def sample(self, batch_size: int, generator: torch.Generator, beta: float = 0.4) -> Batch:
        if self.tree is None:
            # Uniform over valid slots by rejection: draw twice as many written slots as needed and keep the valid
            # ones (autoreset slots are rare); an O(capacity) multinomial only if too few survive.
            candidates = torch.randint(len(self), (2 * batch_size,), generator=generator, device=self.device)
            flat = candidates[self.valid.flatten()[candidates]][:batch_size]
            if len(flat) < batch_size:
                flat = torch.multinomial(self.valid.flatten().float(), batch_size, replacement=True,
                                         generator=generator)
            weights = torch.ones(batch_size, device=self.device)
        else:
            # Stratified: one draw from each of batch_size equal slices of the total priority mass.
            total = self.tree.total
            u = torch.rand(batch_size, generator=generator, device=self.device, dtype=torch.float64)
            mass = (torch.arange(batch_size, device=self.device, dtype=torch.float64) + u) * (total / batch_size)
            flat = self.tree.find(mass)
            probs = self.tree.leaves()[flat] / total
            weights = (len(self) * probs).pow(-beta)
            weights = (weights / weights.max()).float()
        row, env = flat // self.num_envs, flat % self.num_envs
        returns, last_row, bootstrap = self._n_step(row, env)
        return Batch(obs=self.obs[row, env], actions=self.actions[row, env], returns=returns,
                     next_obs=self.next_obs[last_row, env], bootstrap=bootstrap, weights=weights, index=flat)

    def _n_step(self, row: torch.Tensor, env: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Discounted sum of up to n rewards from (row, env), stopping at an episode end or the newest row."""
        returns = torch.zeros(row.shape, dtype=torch.float32, device=self.device)
        discount = torch.ones_like(returns)
        alive = torch.ones(row.shape, dtype=torch.bool, device=self.device)
        last_row = row.clone()
        newest = (self.row - 1) % self.rows
        for k in range(self.n_step):  # n is small; the batch dimension stays vectorised
            r = (row + k) % self.rows
            returns += alive * discount * self.rewards[r, env]
            last_row = torch.where(alive, r, last_row)
            discount = torch.where(alive, discount * self.gamma, discount)
            alive = alive & ~self.episode_end[r, env] & (r != newest)
        terminated = self.terminated[last_row, env]
        return returns, last_row, torch.where(terminated, torch.zeros_like(discount), discount)

    def update_priorities(self, index: torch.Tensor, td_error: torch.Tensor) -> None:
        priority = (td_error.detach().abs().double() + self.priority_eps)
        self.max_priority = torch.maximum(self.max_priority, priority.max())
        self.tree.update(index, priority.pow(self.alpha) * self.valid.flatten()[index].double())

    def state_dict(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in
                 ("obs", "next_obs", "actions", "rewards", "terminated", "episode_end", "valid")}
        state.update(row=self.row, full=self.full, max_priority=self.max_priority)
        if self.tree is not None:
            state["tree"] = self.tree.nodes
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("obs", "next_obs", "actions", "rewards", "terminated", "episode_end", "valid"):
            getattr(self, name).copy_(state[name])
        self.row, self.full = state["row"], state["full"]
        self.max_priority.copy_(state["max_priority"])
        if self.tree is not None:
            self.tree.nodes.copy_(state["tree"])
