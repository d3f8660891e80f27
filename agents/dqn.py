"""DQN (Mnih et al. 2015) with the improvements that matter, each a switch: Double DQN (van Hasselt 2016),
dueling heads (Wang 2016), n-step returns, prioritized replay (Schaul 2016), Huber or MSE loss, hard or Polyak
target updates, linear or exponential ε. Trains on N Gymnasium vector envs; the Trainer owns the optimizer.
"""
from __future__ import annotations

import copy
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from agents.exploration import EpsilonConfig
from agents.replay import FrameReplayBuffer, ReplayBuffer
from agents.value_agent import ValueAgent
from envs.atari import is_atari
from envs.factory import EnvConfig
from lab.config import ModelSwitches, RunConfig
from lab.distributed import DistInfo
from lab.errors import LabError
from lab.registry import AGENTS, TASKS
from lab.seeding import restore_generator
from lab.task import StepOutput


class DQNAgentConfig(EpsilonConfig):
    buffer_size: int = Field(100_000, gt=0)
    batch_size: int = Field(64, gt=0)
    gamma: float = Field(0.99, gt=0, le=1)
    learning_starts: int = Field(1_000, ge=0, description="env steps of random-ish play before learning")
    train_frequency: int = Field(4, gt=0, description="env steps between training rounds")
    gradient_steps: int = Field(1, gt=0, description="gradient updates per training round")
    double: bool = True
    n_step: int = Field(1, ge=1)
    prioritized: bool = False
    priority_alpha: float = Field(0.6, ge=0)
    priority_beta: float = Field(0.4, ge=0, le=1, description="IS exponent, annealed to 1 over training")
    loss: Literal["huber", "mse"] = "huber"
    target_update: Literal["hard", "polyak"] = "hard"
    target_update_interval: int = Field(1_000, gt=0, description="updates between hard target copies")
    tau: float = Field(0.005, gt=0, le=1, description="Polyak rate per update")
    overlap_env: bool = Field(
        True, description="where envs step in background threads (Atari), play the next step while the learner "
        "updates; its actions come from the network one update earlier")
    replay_device: Literal["auto", "cpu"] = Field(
        "auto", description="where replay lives: auto = the training device; cpu = host RAM, batches copied over")


class QModelConfig(ModelSwitches):
    torso: str = "mlp"
    hidden: list[int] = [256, 256]
    layer_norm: bool = False
    dueling: bool = False
    head_hidden: int = Field(0, ge=0, description="hidden units in the Q head (0: linear head)")
    init_from: str | None = Field(None, description="RUN_DIR whose vision encoder (an agent's pixel torso or an "
                                                    "image classifier's backbone) starts this pixel torso")

    @field_validator("torso")
    @classmethod
    def _known_torso(cls, name: str) -> str:
        from agents.torsos import check_torso_name

        return check_torso_name(name)


# Short names an encoder may go by where the vision registry has longer ones.
ENCODER_ALIASES = {"nature": "nature_cnn", "impala": "impala_cnn"}


class ValueAgentConfig(RunConfig):
    """What DQN's and PQN's configs share: an env and a Q-network whose torso `model.torso` names. `agent.encoder`,
    when given, sets it (`agent.encoder=impala` is `model.torso=impala_cnn`), for those who look for the pixel
    encoder among the agent's keys."""

    env: EnvConfig = EnvConfig()

    @model_validator(mode="before")
    @classmethod
    def _agent_encoder(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("agent"), dict) or "encoder" not in data["agent"]:
            return data
        agent = dict(data["agent"])
        encoder = agent.pop("encoder")
        encoder = ENCODER_ALIASES.get(encoder, encoder)
        return {**data, "agent": agent, "model": {**(data.get("model") or {}), "torso": encoder}}


class DQNConfig(ValueAgentConfig):
    task: Literal["dqn"] = "dqn"
    agent: DQNAgentConfig = DQNAgentConfig()
    model: QModelConfig = QModelConfig()


def td_targets(online: torch.nn.Module, target: torch.nn.Module, next_obs: torch.Tensor, returns: torch.Tensor,
               bootstrap: torch.Tensor, double: bool, online_next_q: torch.Tensor | None = None) -> torch.Tensor:
    """r + γⁿ·Q_target(s', a*) with a* = argmax Q_online(s') (Double DQN) or argmax Q_target(s').

    `online_next_q` saves a forward pass when the caller already has Q_online(s')."""
    next_q = target(next_obs).float()
    if double:
        if online_next_q is None:
            online_next_q = online(next_obs)
        best = online_next_q.argmax(dim=1, keepdim=True)
        next_value = next_q.gather(1, best).squeeze(1)
    else:
        next_value = next_q.max(dim=1).values
    return returns + bootstrap * next_value


@AGENTS.register("dqn", help="DQN with Double, dueling, n-step, prioritized replay switches")
@TASKS.register("dqn", help="Deep Q-learning on a Gymnasium env with discrete actions")
class DQN(ValueAgent):
    Config = DQNConfig
    best_checkpoint = "weights"  # the replay memory makes a full checkpoint gigabytes on Atari

    def __init__(self, config: DQNConfig, device: torch.device, run_dir: Path | None, dist: DistInfo) -> None:
        super().__init__(config, device, run_dir, dist)
        self.target = copy.deepcopy(self.model).requires_grad_(False)
        self.replay_device = device if self.cfg.replay_device == "auto" else torch.device("cpu")
        self.replay_generator = self.generator if self.replay_device == device else \
            torch.Generator(device=self.replay_device).manual_seed(config.seed + 1)
        self.updates_due = 0
        self.overlap_env = self.cfg.overlap_env and self.runner.steps_in_background
        # Polyak blends these pairs after every update; listing them once spares a walk over the modules each time.
        self.polyak_pairs = (list(self.target.parameters()), list(self.model.parameters()))

    @cached_property
    def buffer(self) -> ReplayBuffer | FrameReplayBuffer:
        """Made on first use, so evaluating or watching a trained agent never allocates the replay memory."""
        obs_space = self.runner.envs.single_observation_space
        obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
        # Atari stacks share 3 of 4 frames with their neighbours: store each frame once (8× less memory).
        buffer_class = FrameReplayBuffer if is_atari(self.config.env.id) else ReplayBuffer
        return buffer_class(self.cfg.buffer_size, self.config.env.num_envs, obs_space.shape, obs_dtype,
                            self.replay_device, n_step=self.cfg.n_step, gamma=self.cfg.gamma,
                            prioritized=self.cfg.prioritized, alpha=self.cfg.priority_alpha)

    def collect(self) -> tuple[int, dict[str, float]]:
        """One step of every env into the replay buffer. When overlapping, the step was sent by the previous call
        and is received here, and the next one is sent before returning: the envs play it during the update."""
        epsilon = self.epsilon()
        if self.overlap_env:
            if self.runner.in_flight is None:  # the run's first step, or the first after a restore
                self.runner.send(self.act(self.runner.obs, epsilon))
            step, metrics = self.runner.receive()
            self.runner.send(self.act(self.runner.obs, self.epsilon()))
        else:
            step, metrics = self.runner.step(self.act(self.runner.obs, epsilon))
        self.buffer.add(step.obs, step.actions, step.rewards, step.next_obs, step.terminal, step.truncated,
                        step.valid)
        return self.runner.num_envs, {"epsilon": epsilon, **metrics}

    # --- learning ---------------------------------------------------------------------------------------------
    def train_step(self) -> StepOutput:
        steps, metrics = 0, {}
        if self.updates_due == 0 or len(self.buffer) < self.cfg.batch_size:  # never spin without stepping
            before = self.env_steps
            steps, metrics = self.collect()
            if self.env_steps >= self.cfg.learning_starts:
                rounds = self.env_steps // self.cfg.train_frequency - before // self.cfg.train_frequency
                self.updates_due += rounds * self.cfg.gradient_steps
        if self.updates_due == 0 or len(self.buffer) < self.cfg.batch_size:
            return StepOutput(steps=steps, metrics=metrics)
        self.updates_due -= 1
        loss, q_mean = self.td_loss()
        return StepOutput(loss=loss, steps=steps, metrics={**metrics, "q_mean": q_mean})

    def td_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        beta = self.cfg.priority_beta + (1 - self.cfg.priority_beta) * min(
            1.0, self.env_steps / self.config.trainer.max_steps)
        batch = self.buffer.sample(self.cfg.batch_size, self.replay_generator, beta)
        if self.buffer.device != self.device:  # host-resident replay: one pinned, asynchronous copy per batch
            batch = batch.to(self.device)
        n = len(batch.obs)
        online_next_q = None
        if self.cfg.double:  # one forward over s and s′ together: Double DQN's argmax comes almost for free
            q_all = self.model(torch.cat([batch.obs, batch.next_obs])).float()
            q_all, online_next_q = q_all[:n], q_all[n:].detach()
        else:
            q_all = self.model(batch.obs).float()
        with torch.no_grad():
            target = td_targets(self.model, self.target, batch.next_obs, batch.returns, batch.bootstrap,
                                self.cfg.double, online_next_q)
        q = q_all.gather(1, batch.actions.unsqueeze(1)).squeeze(1)
        if self.cfg.loss == "huber":
            per_sample = F.smooth_l1_loss(q, target, reduction="none")
        else:
            per_sample = F.mse_loss(q, target, reduction="none")
        if self.cfg.prioritized:
            self.buffer.update_priorities(batch.index, (target - q).detach())
        return (batch.weights * per_sample).mean(), q.detach().mean()

    def after_update(self, updates: int) -> None:
        if self.cfg.target_update == "polyak":
            with torch.no_grad():  # one call for all tensors: small networks are bound by per-call overhead
                torch._foreach_lerp_(*self.polyak_pairs, self.cfg.tau)
        elif updates % self.cfg.target_update_interval == 0:
            self.target.load_state_dict(self.model.state_dict())

    # --- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.state_dict(),
            "buffer": self.buffer.state_dict(),
            "generator": self.generator.get_state(), "replay_generator": self.replay_generator.get_state(),
            "runner": self.runner.state_dict(), "updates_due": self.updates_due,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "runner" not in state:
            raise LabError("this DQN checkpoint predates the current state format (no env-runner state): "
                           "it can be evaluated and watched, but not resumed; start a new run")
        self.target.load_state_dict(state["target"])
        self.buffer.load_state_dict(state["buffer"])
        restore_generator(self.generator, state["generator"], "exploration")
        restore_generator(self.replay_generator, state["replay_generator"], "replay sampling")
        self.updates_due = state["updates_due"]
        if not self.runner.load_state_dict(state["runner"]):  # fresh episodes: nothing may run across the restart
            self.buffer.mark_discontinuity()
