"""What every deep value-based agent (DQN, PQN) shares: vector envs through an `EnvRunner`, a Q-network with a
torso (the MLP or a vision encoder), an ε schedule, the greedy evaluation protocol and the final evaluation video."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.evaluation import EpisodeEvaluator
from agents.exploration import epsilon_at, epsilon_greedy
from agents.networks import QNetwork
from agents.runner import EnvRunner
from agents.torsos import build_torso
from envs.atari import is_atari
from lab.checkpoint import has_checkpoint
from lab.distributed import DistInfo
from lab.task import Task


class ValueAgent(Task):
    best_metric = "eval/mean_return"

    def __init__(self, config: Any, device: torch.device, run_dir: Path | None, dist: DistInfo) -> None:
        super().__init__(config, device, run_dir, dist)
        self.cfg = config.agent
        self.runner = EnvRunner(config.env, config.seed, device)
        self.n_actions = self.runner.n_actions
        obs_space = self.runner.envs.single_observation_space
        torso = build_torso(config.model, obs_space.shape, load_weights=not has_checkpoint(run_dir))
        self.model = QNetwork(torso, self.n_actions, config.model.dueling, config.model.head_hidden).to(device)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)  # exploration (and sampling)
        self.evaluator = EpisodeEvaluator(config.env.id, config.env.kwargs)

    @property
    def env_steps(self) -> int:
        return self.runner.env_steps

    def epsilon(self) -> float:
        return epsilon_at(self.env_steps, self.config.trainer.max_steps, self.cfg)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, epsilon: float) -> torch.Tensor:
        return epsilon_greedy(self.model(obs), epsilon, self.generator)

    def greedy_policy(self, obs: np.ndarray) -> np.ndarray:
        return self.act(torch.as_tensor(obs, device=self.device), epsilon=0.0).cpu().numpy()

    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        episodes = episodes or self.config.trainer.eval_episodes
        return self.evaluator(self.greedy_policy, episodes, self.config.seed)

    def log_media(self, tracker: Any, step: int) -> None:
        frames = self.config.tracking.video_frames
        # Rendering and encoding cost about an episode: only for the final evaluation, and only if W&B is on.
        # Atari agents see ale-py's preprocessed frames, which a single rendering env does not reproduce.
        if frames and self.evaluation_is_final and tracker.wandb_run is not None and not is_atari(self.config.env.id):
            import pygame

            from envs.play.recording import record_episode

            try:
                video = record_episode(self, max_frames=frames)
            except (pygame.error, OSError) as error:  # a video is an extra: the trained run must not fail on it
                print(f"note: no eval video for W&B ({error})", file=sys.stderr)
                return
            tracker.log_video("eval/video", video, step, fps=30)

    def close(self) -> None:
        self.runner.close()
        self.evaluator.close()
