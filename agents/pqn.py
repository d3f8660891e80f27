"""PQN (Gallici et al., "Simplifying Deep Temporal Difference Learning", ICLR 2025): Q-learning without replay
and without a target network. Many envs act in parallel with ε-greedy; every `rollout_steps` steps the rollout's
Q(λ) returns become regression targets for a few epochs of minibatch updates. LayerNorm in the Q-network keeps
the bootstrapped targets stable where DQN needs its target network.

One Trainer step is one minibatch update; a step that finishes the previous rollout's minibatches first collects
the next rollout (its env steps advance `trainer.max_steps`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from agents.dqn import QModelConfig, ValueAgentConfig
from agents.exploration import EpsilonConfig, epsilon_greedy
from agents.value_agent import ValueAgent
from lab.distributed import DistInfo
from lab.errors import LabError
from lab.registry import AGENTS, TASKS
from lab.seeding import restore_generator
from lab.task import StepOutput


class PQNAgentConfig(EpsilonConfig):
    rollout_steps: int = Field(32, gt=0, description="env steps per env between learning phases")
    epochs: int = Field(2, gt=0, description="passes over each rollout")
    minibatches: int = Field(32, gt=0, description="minibatches per epoch (rollout_steps × num_envs samples split)")
    gamma: float = Field(0.99, gt=0, le=1)
    td_lambda: float = Field(0.65, ge=0, le=1, description="λ of the Q(λ) returns: 0 = one-step, 1 = Monte Carlo")
    loss: Literal["mse", "huber"] = "mse"


class PQNModelConfig(QModelConfig):
    layer_norm: bool = True  # the paper's stabiliser: keep it on


class PQNConfig(ValueAgentConfig):
    task: Literal["pqn"] = "pqn"
    agent: PQNAgentConfig = PQNAgentConfig()
    model: PQNModelConfig = PQNModelConfig()


def lambda_returns(rewards: torch.Tensor, terminal: torch.Tensor, episode_end: torch.Tensor,
                   next_max_q: torch.Tensor, gamma: float, td_lambda: float) -> torch.Tensor:
    """Q(λ) targets of a (T, N) rollout, computed backwards in time:

        G_t = r_t + γ·(1 − terminal_t)·[λ·G_{t+1} + (1 − λ)·max_a Q(s_{t+1}, a)]

    where the episode goes on after t; where it ended at t (terminal or truncated), and at the rollout's last
    step, the bracket is max_a Q(s_{t+1}, a) alone (zeroed by `terminal` unless it was a truncation)."""
    steps = rewards.shape[0]
    returns = torch.empty_like(rewards)
    following = next_max_q[-1]  # G_{t+1}; unused at the last step, where the mixing weight is 0
    for t in reversed(range(steps)):
        mix = 0.0 if t == steps - 1 else td_lambda * (~episode_end[t]).float()
        bootstrap = mix * following + (1.0 - mix) * next_max_q[t]
        following = rewards[t] + gamma * (~terminal[t]).float() * bootstrap
        returns[t] = following
    return returns


@AGENTS.register("pqn", help="PQN: parallel Q(λ) with LayerNorm, no replay, no target network")
@TASKS.register("pqn", help="PQN on a Gymnasium env with discrete actions (Gallici et al. 2025)")
class PQN(ValueAgent):
    Config = PQNConfig

    def __init__(self, config: PQNConfig, device: torch.device, run_dir: Path | None, dist: DistInfo) -> None:
        super().__init__(config, device, run_dir, dist)
        samples = self.cfg.rollout_steps * config.env.num_envs
        self.minibatch_size = samples // self.cfg.minibatches
        if self.minibatch_size == 0:
            raise LabError(f"agent.minibatches={self.cfg.minibatches} exceeds the {samples} samples of a rollout "
                           "(rollout_steps × num_envs): use fewer minibatches or more envs")
        self.updates_per_rollout = self.cfg.epochs * self.cfg.minibatches
        self.rollout: dict[str, torch.Tensor] = {}
        self.order = torch.empty(0, dtype=torch.long, device=device)  # sample indices of the pending minibatches
        self.next_minibatch = self.updates_per_rollout  # nothing pending: the first step collects

    # --- acting: one rollout ----------------------------------------------------------------------------------
    @torch.no_grad()
    def collect_rollout(self) -> dict[str, float]:
        """`rollout_steps` steps of every env, then the Q(λ) targets from the Q-values seen while acting."""
        steps = []
        max_q = []  # max_a Q(s_t, a) for t = 0 … T: the bootstrap values
        metrics: dict[str, list[float]] = {}
        epsilon = self.epsilon()
        for _ in range(self.cfg.rollout_steps):
            q = self.model(self.runner.obs).float()
            max_q.append(q.max(dim=1).values)
            step, info = self.runner.step(epsilon_greedy(q, epsilon, self.generator))
            steps.append(step)
            for key, value in info.items():
                metrics.setdefault(key, []).append(value)
        max_q.append(self.model(self.runner.obs).float().max(dim=1).values)
        stacked = {name: torch.stack([getattr(s, name) for s in steps])
                   for name in ("obs", "actions", "rewards", "terminal", "truncated", "valid")}
        returns = lambda_returns(stacked["rewards"], stacked["terminal"], stacked["terminal"] | stacked["truncated"],
                                 torch.stack(max_q[1:]), self.cfg.gamma, self.cfg.td_lambda)
        self.rollout = {"obs": stacked["obs"].flatten(0, 1), "actions": stacked["actions"].flatten(),
                        "returns": returns.flatten(), "valid": stacked["valid"].flatten().float()}
        samples = len(self.rollout["actions"])
        self.order = torch.cat([torch.randperm(samples, generator=self.generator, device=self.device)
                                for _ in range(self.cfg.epochs)])
        self.next_minibatch = 0
        return {"epsilon": epsilon, **{k: float(np.mean(v)) for k, v in metrics.items()}}

    # --- learning: one minibatch --------------------------------------------------------------------------------
    def train_step(self) -> StepOutput:
        steps, metrics = 0, {}
        if self.next_minibatch == self.updates_per_rollout:
            steps, metrics = self.runner.num_envs * self.cfg.rollout_steps, self.collect_rollout()
        # Each epoch is one permutation; leftover samples (when minibatches do not divide it) sit that epoch out.
        epoch, minibatch = divmod(self.next_minibatch, self.cfg.minibatches)
        start = epoch * len(self.rollout["actions"]) + minibatch * self.minibatch_size
        index = self.order[start:start + self.minibatch_size]
        self.next_minibatch += 1
        q = self.model(self.rollout["obs"][index]).float()
        q = q.gather(1, self.rollout["actions"][index].unsqueeze(1)).squeeze(1)
        target = self.rollout["returns"][index]
        if self.cfg.loss == "huber":
            per_sample = F.smooth_l1_loss(q, target, reduction="none")
        else:
            per_sample = 0.5 * (q - target) ** 2
        valid = self.rollout["valid"][index]  # autoreset steps are no transition: they weigh nothing
        loss = (valid * per_sample).sum() / valid.sum().clamp(min=1.0)
        return StepOutput(loss=loss, steps=steps, metrics={**metrics, "q_mean": q.detach().mean()})

    # --- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "runner": self.runner.state_dict(),
                "rollout": dict(self.rollout), "order": self.order, "next_minibatch": self.next_minibatch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_generator(self.generator, state["generator"], "exploration")
        self.runner.load_state_dict(state["runner"])
        self.rollout = {name: value.to(self.device) for name, value in state["rollout"].items()}
        self.order = state["order"].to(self.device)
        self.next_minibatch = state["next_minibatch"]
