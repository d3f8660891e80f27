"""The play state machine: pause, single steps, speed, human takeover and episodes, fed pygame events.

It draws nothing and never waits: a window (`envs.play.window`) or a recorder (`envs.play.recording`) calls
`handle(event)` for each event and `advance()` when a step is due, so tests drive it with synthetic events.
"""
from __future__ import annotations

from collections.abc import Iterable

import gymnasium as gym
import numpy as np
import pygame
import torch

from envs.play.controls import controls_for

PAUSE_KEYS = {pygame.K_SPACE, pygame.K_p}
STEP_KEYS = {pygame.K_RIGHT, pygame.K_PERIOD}
FASTER_KEYS = {pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS}  # '+' is shift+'=' on most layouts
SLOWER_KEYS = {pygame.K_MINUS, pygame.K_KP_MINUS}
RESET_KEYS = {pygame.K_r}
TAKEOVER_KEYS = {pygame.K_h}
SCREENSHOT_KEYS = {pygame.K_s, pygame.K_F12}
QUIT_KEYS = {pygame.K_q, pygame.K_ESCAPE}
SPEEDS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


class QAgent:
    """The Q-values a trained task's network gives one observation."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        batch = torch.as_tensor(np.asarray(obs)[None], device=self.device)
        return self.model(batch).float().cpu().numpy()[0]


class Player:
    """One env played by an agent, a person, or both in turn. `env` must render ``rgb_array`` frames.

    Each observation is shown with the action about to be taken from it: the agent's (ε-greedy on its Q-values)
    or, while a person has taken over, the one their held keys pick.
    """

    def __init__(self, env: gym.Env, agent: QAgent | None = None, *, episodes: int | None = None,
                 epsilon: float = 0.0, seed: int | None = None, max_steps: int | None = None, fps: float = 30.0,
                 human: bool = False) -> None:
        if env.render_mode != "rgb_array":
            raise ValueError(f"Player needs an env made with render_mode='rgb_array', got {env.render_mode!r}")
        self.env, self.agent = env, agent
        self.controls = controls_for(env)
        self.episodes, self.epsilon, self.seed, self.max_steps, self.fps = episodes, epsilon, seed, max_steps, fps
        self.rng = np.random.default_rng(seed)  # ε draws: the env's own RNG stays untouched

        self.paused = False
        self.step_pending = False  # one step requested while paused
        self.speed_index = SPEEDS.index(1.0)
        self.human = human or agent is None  # a person in control; with no agent, from the start
        self.held: set[int] = set()  # mapped keys held down now
        self.pressed: set[int] = set()  # mapped keys pressed since the last step, so a short tap is never lost
        self.quit = False
        self.screenshot_requested = False  # the window saves it and clears the flag

        self.resets = 0
        self.returns: list[float] = []  # finished episodes
        self.lengths: list[int] = []
        self._new_episode()

    # --- state shown by the overlay ---------------------------------------------------------------------------
    @property
    def speed(self) -> float:
        return SPEEDS[self.speed_index]

    @property
    def steps_per_second(self) -> float:
        return self.fps * self.speed

    @property
    def episode(self) -> int:
        """1-based number of the episode being played (or just finished)."""
        return len(self.returns) + (0 if self.episode_over else 1)

    @property
    def finished(self) -> bool:
        return self.quit or (self.episodes is not None and len(self.returns) >= self.episodes)

    @property
    def action(self) -> int | None:
        """The action the next step takes: the person's keys during a takeover, else the agent's choice."""
        if self.human:
            return self.controls.action(self.held | self.pressed)
        return self.agent_action

    @property
    def frame(self) -> np.ndarray:
        if self._frame is None:  # rendered on demand: steps run faster than the screen skip it
            self._frame = self.env.render()
        return self._frame

    # --- input ------------------------------------------------------------------------------------------------
    def handle(self, event: pygame.event.Event) -> None:
        if event.type == pygame.QUIT:
            self.quit = True
        elif event.type == pygame.KEYUP:
            self.held.discard(event.key)
        elif event.type == pygame.KEYDOWN:
            if self.human and event.key in self.controls.keys:  # while a person plays, the game's keys are theirs
                self.held.add(event.key)
                self.pressed.add(event.key)
            else:
                self._command(event.key)

    def _command(self, key: int) -> None:
        if key in QUIT_KEYS:
            self.quit = True
        elif key in PAUSE_KEYS:
            self.paused = not self.paused
        elif key in STEP_KEYS and self.paused:
            self.step_pending = True
        elif key in FASTER_KEYS:
            self.speed_index = min(self.speed_index + 1, len(SPEEDS) - 1)
        elif key in SLOWER_KEYS:
            self.speed_index = max(self.speed_index - 1, 0)
        elif key in RESET_KEYS:
            self._new_episode()  # an episode cut short is not counted
        elif key in TAKEOVER_KEYS and self.agent is not None:
            self.human = not self.human
            self.held.clear()
            self.pressed.clear()
        elif key in SCREENSHOT_KEYS:
            self.screenshot_requested = True

    def tick(self, events: Iterable[pygame.event.Event] = ()) -> bool:
        """Handle events, then advance once: one frame of a window that steps every frame."""
        for event in events:
            self.handle(event)
        return self.advance()

    # --- the game ---------------------------------------------------------------------------------------------
    def advance(self) -> bool:
        """One env step (or the start of the next episode) unless paused, finished or waiting for a key.
        Returns whether anything changed."""
        if self.finished or (self.paused and not self.step_pending):
            return False
        if self.episode_over:
            self.step_pending = False
            self._new_episode()
            return True
        action = self.action
        if action is None:  # a person's turn and no key held
            return False
        self.step_pending = False
        self.pressed.clear()
        self.obs, reward, terminated, truncated, _ = self.env.step(action)
        self.last_action, self.last_reward = action, float(reward)
        self.step += 1
        self.episode_return += float(reward)
        self._frame = None
        if terminated or truncated or (self.max_steps is not None and self.step >= self.max_steps):
            self.episode_over = True  # its last frame is shown; the next advance starts a new episode
            self.returns.append(self.episode_return)
            self.lengths.append(self.step)
        self._plan()
        return True

    def _new_episode(self) -> None:
        seed = None if self.seed is None else self.seed + self.resets
        self.obs, _ = self.env.reset(seed=seed)
        self.resets += 1
        self.step, self.episode_return = 0, 0.0
        self.last_action: int | None = None
        self.last_reward = 0.0
        self.episode_over = False
        self._frame: np.ndarray | None = None
        self._plan()

    def _plan(self) -> None:
        """The agent's Q-values for the current observation and the action it takes from it."""
        self.q_values: np.ndarray | None = None
        self.agent_action: int | None = None
        self.explored = False
        if self.agent is None:
            return
        self.q_values = self.agent.q_values(self.obs)
        self.agent_action = int(self.q_values.argmax())
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            self.agent_action = int(self.rng.integers(len(self.q_values)))
            self.explored = True
