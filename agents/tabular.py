"""Tabular Q-learning (Watkins 1989), SARSA and Expected SARSA (Sutton & Barto, ch. 6) through the Trainer.

The Q-table is an nn.Parameter and each update is one SGD step with lr = α on ½·(target − Q(s, a))², whose
gradient step is exactly Q(s, a) ← Q(s, a) + α·(target − Q(s, a)). So the Trainer's loop, checkpoints, resume and
tracking serve tabular agents unchanged (use optim.name=sgd, optim.lr=α).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from agents.evaluation import EpisodeEvaluator
from agents.exploration import EpsilonConfig, epsilon_at
from agents.runner import EnvRunner
from envs.factory import EnvConfig
from lab.config import ModelSwitches, OptimConfig, RunConfig
from lab.distributed import DistInfo
from lab.errors import LabError
from lab.registry import AGENTS, TASKS
from lab.seeding import restore_generator
from lab.task import StepOutput, Task


class TabularAgentConfig(EpsilonConfig):
    algorithm: Literal["q_learning", "sarsa", "expected_sarsa"] = "q_learning"
    gamma: float = Field(0.99, gt=0, le=1)


class QTableConfig(ModelSwitches):
    initial_value: float = Field(0.0, description="optimistic initial values (> 0) encourage exploration")


class TabularConfig(RunConfig):
    task: Literal["qlearning"] = "qlearning"
    env: EnvConfig = EnvConfig(id="FrozenLake-v1")
    agent: TabularAgentConfig = TabularAgentConfig()
    model: QTableConfig = QTableConfig()
    optim: OptimConfig = OptimConfig(name="sgd", lr=0.1)


class QTable(torch.nn.Module):
    def __init__(self, n_states: int, n_actions: int, initial_value: float) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.full((n_states, n_actions), float(initial_value)))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.table[states.long()]


@AGENTS.register("qlearning", help="tabular Q-learning, SARSA and Expected SARSA")
@TASKS.register("qlearning", help="tabular Q-learning / SARSA on discrete envs (FrozenLake, Taxi, CliffWalking)")
class TabularQ(Task):
    Config = TabularConfig
    best_metric = "eval/mean_return"

    def __init__(self, config: TabularConfig, device: torch.device, run_dir: Path | None, dist: DistInfo) -> None:
        super().__init__(config, device, run_dir, dist)
        self.cfg = config.agent
        if config.optim.name != "sgd" or config.optim.momentum:
            raise LabError("a Q-table learns by plain SGD: set optim.name=sgd and optim.momentum=0 (optim.lr is α)")
        self.runner = EnvRunner(config.env, config.seed, device)  # vector envs and the episode bookkeeping
        obs_space = self.runner.envs.single_observation_space
        if not hasattr(obs_space, "n"):
            self.runner.close()
            raise LabError(f"env '{config.env.id}' needs Discrete observations for a Q-table (it has "
                           f"{type(obs_space).__name__}); use task: dqn")
        self.n_actions = self.runner.n_actions
        self.model = QTable(int(obs_space.n), self.n_actions, config.model.initial_value).to(device)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.evaluator = EpisodeEvaluator(config.env.id, config.env.kwargs)
        self.actions = self.act(self.states, self.epsilon())  # chosen one step ahead, as SARSA needs a′

    @property
    def states(self) -> torch.Tensor:
        return self.runner.obs

    def epsilon(self) -> float:
        return epsilon_at(self.runner.env_steps, self.config.trainer.max_steps, self.cfg)

    @torch.no_grad()
    def act(self, states: torch.Tensor, epsilon: float) -> torch.Tensor:
        q = self.model(states)
        # Random tie-breaking, so an all-zero table does not always pick action 0.
        noise = torch.rand(q.shape, generator=self.generator, device=self.device) * 1e-6
        greedy = (q + noise).argmax(dim=1)
        explore = torch.rand(len(states), generator=self.generator, device=self.device) < epsilon
        random_actions = torch.randint(self.n_actions, (len(states),), generator=self.generator, device=self.device)
        return torch.where(explore, random_actions, greedy)

    def train_step(self) -> StepOutput:
        epsilon = self.epsilon()
        step, metrics = self.runner.step(self.actions)
        next_actions = self.act(step.next_obs, epsilon)  # SARSA's a′, and the action taken next either way
        with torch.no_grad():
            next_q = self.model(step.next_obs)
            if self.cfg.algorithm == "q_learning":
                next_value = next_q.max(dim=1).values
            elif self.cfg.algorithm == "sarsa":
                next_value = next_q.gather(1, next_actions.unsqueeze(1)).squeeze(1)
            else:  # expected SARSA: the mean of Q(s′, ·) under the ε-greedy policy
                greedy = torch.zeros_like(next_q).scatter_(1, next_q.argmax(1, keepdim=True), 1.0)
                policy = epsilon / self.n_actions + (1 - epsilon) * greedy
                next_value = (policy * next_q).sum(dim=1)
            target = step.rewards + self.cfg.gamma * (~step.terminal).float() * next_value
        q = self.model(step.obs).gather(1, step.actions.unsqueeze(1)).squeeze(1)
        # Autoreset steps are no transition; sum, not mean: each env's update keeps step size α.
        loss = 0.5 * (step.valid * (target - q) ** 2).sum()
        self.actions = next_actions
        return StepOutput(loss=loss, steps=self.runner.num_envs, metrics={"epsilon": epsilon, **metrics})

    def greedy_policy(self, obs: np.ndarray) -> np.ndarray:
        return self.act(torch.as_tensor(obs, device=self.device), epsilon=0.0).cpu().numpy()

    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        return self.evaluator(self.greedy_policy, episodes or self.config.trainer.eval_episodes, self.config.seed)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "actions": self.actions, "runner": self.runner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_generator(self.generator, state["generator"], "exploration")
        self.actions = state["actions"].to(self.device)
        if not self.runner.load_state_dict(state.get("runner") or runner_state_of_old_checkpoint(state)):
            self.actions = self.act(self.states, self.epsilon())  # fresh episodes: act on their first states

    def close(self) -> None:
        self.runner.close()
        self.evaluator.close()


def runner_state_of_old_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints written before tabular agents stepped through EnvRunner kept its fields at the top level."""
    return {"obs": state["states"], "autoreset": state["autoreset"], "episode_return": state["episode_return"],
            "episode_length": np.zeros(len(state["autoreset"]), dtype=np.int64), "env_steps": state["env_steps"],
            "envs": state["envs"]}
