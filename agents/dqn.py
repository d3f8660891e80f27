"""DQN (Mnih et al. 2015) with the improvements that matter, each a switch: Double DQN (van Hasselt 2016),
dueling heads (Wang 2016), n-step returns, prioritized replay (Schaul 2016), Huber or MSE loss, hard or Polyak
target updates, linear or exponential ε. Trains on N Gymnasium vector envs; the Trainer owns the optimizer.
"""
from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from agents.evaluation import EpisodeEvaluator
from agents.exploration import EpsilonConfig, epsilon_at
from agents.networks import QNetwork
from agents.replay import ReplayBuffer
from agents.torsos import build_torso
from envs.factory import EnvConfig, make_vec_env
from envs.snapshot import env_state, is_snapshotable, restore_env_state
from lab.config import ModelSwitches, RunConfig
from lab.errors import LabError
from lab.registry import AGENTS, TASKS
from lab.task import StepOutput, Task


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


class QModelConfig(ModelSwitches):
    torso: str = "mlp"
    hidden: list[int] = [256, 256]
    layer_norm: bool = False
    dueling: bool = False
    head_hidden: int = Field(0, ge=0, description="hidden units in the Q head (0: linear head)")


class DQNConfig(RunConfig):
    task: Literal["dqn"] = "dqn"
    env: EnvConfig = EnvConfig()
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
class DQN(Task):
    Config = DQNConfig
    best_metric = "eval/mean_return"

    def __init__(self, config: DQNConfig, device: torch.device, run_dir: Any, dist: Any) -> None:
        super().__init__(config, device, run_dir, dist)
        self.cfg = config.agent
        env_cfg = config.env
        self.envs = make_vec_env(env_cfg.id, env_cfg.num_envs, **env_cfg.kwargs)
        action_space = self.envs.single_action_space
        if not hasattr(action_space, "n"):
            raise LabError(f"env '{env_cfg.id}' has {type(action_space).__name__} actions; DQN needs Discrete ones")
        obs_space = self.envs.single_observation_space
        self.n_actions = int(action_space.n)

        torso = build_torso(config.model, obs_space.shape, obs_space.dtype)
        self.model = QNetwork(torso, self.n_actions, config.model.dueling, config.model.head_hidden).to(device)
        self.target = copy.deepcopy(self.model).requires_grad_(False)
        obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
        self.buffer = ReplayBuffer(self.cfg.buffer_size, env_cfg.num_envs, obs_space.shape, obs_dtype, device,
                                   n_step=self.cfg.n_step, gamma=self.cfg.gamma, prioritized=self.cfg.prioritized,
                                   alpha=self.cfg.priority_alpha)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.evaluator = EpisodeEvaluator(env_cfg.id, env_cfg.kwargs)

        obs, _ = self.envs.reset(seed=config.seed)
        self.obs = self._to_device(obs)
        self.autoreset = np.zeros(env_cfg.num_envs, dtype=bool)  # envs whose next step is Gymnasium's reset step
        self.episode_return = np.zeros(env_cfg.num_envs)
        self.episode_length = np.zeros(env_cfg.num_envs, dtype=np.int64)
        self.env_steps = 0
        self.updates_due = 0

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def epsilon(self) -> float:
        return epsilon_at(self.env_steps, self.config.trainer.max_steps, self.cfg)

    # --- acting -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, epsilon: float) -> torch.Tensor:
        greedy = self.model(obs).argmax(dim=1)
        if epsilon <= 0:
            return greedy
        n = obs.shape[0]
        explore = torch.rand(n, generator=self.generator, device=self.device) < epsilon
        random_actions = torch.randint(self.n_actions, (n,), generator=self.generator, device=self.device)
        return torch.where(explore, random_actions, greedy)

    def collect(self) -> tuple[int, dict[str, float]]:
        """One step of every env into the replay buffer."""
        actions = self.act(self.obs, self.epsilon())
        next_obs, rewards, terminated, truncated, _ = self.envs.step(actions.cpu().numpy())
        valid = ~self.autoreset  # an autoreset step only maps the final obs to a reset obs: no transition
        next_obs_t = self._to_device(next_obs)
        self.buffer.add(self.obs, actions, self._to_device(rewards.astype(np.float32)), next_obs_t,
                        self._to_device(terminated), self._to_device(truncated), self._to_device(valid))
        self.obs = next_obs_t
        self.episode_return += rewards * valid
        self.episode_length += valid
        done = (terminated | truncated) & valid
        metrics: dict[str, float] = {"epsilon": self.epsilon()}
        if done.any():
            metrics["episode_return"] = float(self.episode_return[done].mean())
            metrics["episode_length"] = float(self.episode_length[done].mean())
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
        self.autoreset = terminated | truncated
        self.env_steps += self.envs.num_envs
        return self.envs.num_envs, metrics

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
        batch = self.buffer.sample(self.cfg.batch_size, self.generator, beta)
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
            with torch.no_grad():
                for target, online in zip(self.target.parameters(), self.model.parameters()):
                    target.lerp_(online, self.cfg.tau)
        elif updates % self.cfg.target_update_interval == 0:
            self.target.load_state_dict(self.model.state_dict())

    # --- evaluation -------------------------------------------------------------------------------------------
    def greedy_policy(self, obs: np.ndarray) -> np.ndarray:
        return self.act(self._to_device(obs), epsilon=0.0).cpu().numpy()

    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        episodes = episodes or self.config.trainer.eval_episodes
        return self.evaluator(self.greedy_policy, episodes, self.config.seed)

    def log_media(self, tracker: Any, step: int) -> None:
        frames = self.config.tracking.video_frames
        # Rendering and encoding cost about an episode: only for the final evaluation, and only if W&B is on.
        if frames and self.evaluation_is_final and tracker.wandb_run is not None:
            from envs.play.recording import record_episode

            tracker.log_video("eval/video", record_episode(self, max_frames=frames), step, fps=30)

    # --- state ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.state_dict(),
            "buffer": self.buffer.state_dict(),
            "generator": self.generator.get_state(),
            "obs": self.obs, "autoreset": self.autoreset,
            "episode_return": self.episode_return, "episode_length": self.episode_length,
            "env_steps": self.env_steps, "updates_due": self.updates_due,
            "envs": env_state(self.envs) if is_snapshotable(self.envs) else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])
        self.buffer.load_state_dict(state["buffer"])
        self.generator.set_state(state["generator"])
        self.env_steps, self.updates_due = state["env_steps"], state["updates_due"]
        self.episode_return = state["episode_return"].copy()
        self.episode_length = state["episode_length"].copy()
        if state["envs"] is not None and is_snapshotable(self.envs):
            restore_env_state(self.envs, state["envs"])
            self.obs = state["obs"].to(self.device)
            self.autoreset = state["autoreset"].copy()
        else:  # native-engine envs cannot be restored mid-episode: start fresh episodes
            obs, _ = self.envs.reset(seed=self.config.seed + self.env_steps)
            self.obs = self._to_device(obs)
            self.autoreset[:] = False
            self.buffer.episode_end[(self.buffer.row - 1) % self.buffer.rows] = True  # n-step must not run on
            self.episode_return[:] = 0.0
            self.episode_length[:] = 0

    def close(self) -> None:
        self.envs.close()
        self.evaluator.close()
