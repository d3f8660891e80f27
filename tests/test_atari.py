"""Atari on ale-py's vector env: zero-padded reset stacks, no-op starts and FIRE reset, life loss as a learner-only
terminal, evaluation on full games with raw scores, frame-deduplicated replay against real frames, and DQN and
PQN running end to end on a CPU with tiny budgets."""
import os
import re

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.evaluation import EpisodeEvaluator
from agents.replay import FrameReplayBuffer, ReplayBuffer
from envs.atari import atari_game, make_atari_vec_env
from envs.factory import make_vec_env
from lab.checkpoint import find_checkpoint
from lab.cli import main
from lab.config import load_config
from lab.errors import LabError
from lab.trainer import Trainer, TrainingInterrupted

CPU = torch.device("cpu")


def test_game_name_comes_from_the_registered_id() -> None:
    assert atari_game("ALE/Pong-v5") == "pong"
    assert atari_game("ALE/MontezumaRevenge-v5") == "montezuma_revenge"


def test_reset_stack_is_zero_padded_and_steps_shift_it() -> None:
    envs = make_atari_vec_env("ALE/Pong-v5", 2)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert not obs[:, :3].any() and obs[:, 3].any()  # [0, 0, 0, f0]
    following, *_ = envs.step(np.zeros(2, dtype=np.int64))
    np.testing.assert_array_equal(following[:, :3], obs[:, 1:])
    envs.close()


def frame_numbers_after_resets(seeds: list[int], **kwargs) -> list[list[int]]:
    envs = make_atari_vec_env("ALE/Breakout-v5", 4, episodic_life=False, clip_rewards=False, **kwargs)
    numbers = [envs.reset(seed=seed)[1]["episode_frame_number"].tolist() for seed in seeds]
    envs.close()
    return numbers


def test_fire_reset_and_noop_starts() -> None:
    assert frame_numbers_after_resets([0], noop_max=0, use_fire_reset=False) == [[0] * 4]
    assert frame_numbers_after_resets([0], noop_max=0) == [[1] * 4]  # FIRE pressed once to launch the game
    first, again, other = frame_numbers_after_resets([0, 0, 1])  # up to 30 no-ops, each frame-skipped
    assert len(set(first)) > 1 and max(first) <= 30 * 4 + 1
    assert again == first and other != first  # seeded


def test_unknown_atari_options_are_a_one_line_error() -> None:
    with pytest.raises(LabError, match=r"env.kwargs.max_episode_steps is not an Atari option"):
        make_atari_vec_env("ALE/Pong-v5", 1, max_episode_steps=100)
    with pytest.raises(LabError, match=r"did you mean 'noop_max'"):
        make_atari_vec_env("ALE/Pong-v5", 1, noop_maxx=5)
    with pytest.raises(LabError, match="reward_clipping is not an Atari option"):  # the lab's clip_rewards is
        make_atari_vec_env("ALE/Pong-v5", 1, reward_clipping=True)
    with pytest.raises(LabError, match="autoreset_mode is not an Atari option"):  # the learners need next-step
        make_atari_vec_env("ALE/Pong-v5", 1, autoreset_mode="SameStep")


def test_a_lost_life_ends_bootstrapping_but_not_the_game() -> None:
    envs = make_atari_vec_env("ALE/Breakout-v5", 2)
    _, info = envs.reset(seed=0)
    lives = info["lives"]
    rng = np.random.default_rng(0)
    life_losses = game_overs = 0
    for _ in range(600):
        obs, rewards, terminated, truncated, info = envs.step(rng.integers(4, size=2))
        expected_loss = (info["lives"] < lives) & ~terminated
        np.testing.assert_array_equal(info["life_lost"], expected_loss)
        np.testing.assert_array_equal(rewards, np.sign(info["raw_reward"]))  # clipped for the learner only
        for e in np.flatnonzero(info["life_lost"]):
            assert obs[e, :3].any()  # the game goes on: no reset, the frame stack continues
        for e in np.flatnonzero(terminated):
            assert info["lives"][e] == 0  # only the last life ends an episode
        life_losses += int(info["life_lost"].sum())
        game_overs += int(terminated.sum())
        lives = info["lives"]
    envs.close()
    assert life_losses >= 4 and game_overs >= 1  # random play loses lives every few dozen steps


def test_evaluation_plays_full_games_with_raw_scores() -> None:
    rng = np.random.default_rng(0)
    evaluator = EpisodeEvaluator("ALE/Breakout-v5", {"episodic_life": True, "clip_rewards": True})
    result = evaluator(lambda obs: rng.integers(4, size=len(obs)), episodes=3, seed=0)
    evaluator.close()
    # Random Breakout loses a life every 20–100 steps: a full five-life game lasts well beyond a first life.
    assert result["episodes"] == 3 and result["mean_length"] > 120


class ScriptedGames(gym.vector.VectorEnv):
    """Stand-in for ale-py's vector env: every step scores 7 and then −3 (rewards above 1, so clipping shows),
    a life is lost at steps 2 and 4, and the game ends at step 6 with the last life. It records the actions it is
    sent."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs, self.t, self.sent = num_envs, 0, []
        self.single_observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        self.single_action_space = gym.spaces.Discrete(4)

    def reset(self, **kwargs):  # noqa: ANN003, ANN201
        self.t = 0
        return np.zeros((self.num_envs, 4, 84, 84), np.uint8), {"lives": np.full(self.num_envs, 5)}

    def send(self, actions: np.ndarray) -> None:
        self.sent.append(np.asarray(actions).copy())

    def recv(self):  # noqa: ANN201
        self.t += 1
        lives = np.full(self.num_envs, 0 if self.t >= 6 else 5 - (self.t >= 2) - (self.t >= 4))
        rewards = np.full(self.num_envs, 7.0 if self.t % 2 else -3.0)
        done = np.full(self.num_envs, self.t >= 6)
        return (np.zeros((self.num_envs, 4, 84, 84), np.uint8), rewards, done, np.zeros_like(done),
                {"lives": lives})

    def step(self, actions: np.ndarray):  # noqa: ANN201
        self.send(actions)
        return self.recv()


def test_training_signals_clip_rewards_and_mark_lost_lives_of_the_game_that_goes_on() -> None:
    from envs.atari import AtariTrainingSignals

    envs = AtariTrainingSignals(ScriptedGames(2), episodic_life=True, clip_rewards=True)
    envs.reset()
    seen = [envs.step(np.zeros(2, dtype=np.int64)) for _ in range(6)]
    assert [float(s[1][0]) for s in seen] == [1, -1, 1, -1, 1, -1]  # clipped for the learner
    assert [float(s[4]["raw_reward"][0]) for s in seen] == [7, -3, 7, -3, 7, -3]
    assert [bool(s[4]["life_lost"][0]) for s in seen] == [False, True, False, True, False, False]  # not at game end


def test_evaluation_scores_raw_full_games_and_relaunches_after_a_lost_life(monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.evaluation as evaluation

    games = ScriptedGames(3)
    monkeypatch.setattr(evaluation, "make_atari_vec_env", lambda *args, **kwargs: games)
    monkeypatch.setattr(evaluation, "fire_action", lambda env_id, full_action_space: 1)
    evaluator = EpisodeEvaluator("ALE/Breakout-v5", {"episodic_life": True, "clip_rewards": True})
    result = evaluator(lambda obs: np.full(len(obs), 3), episodes=3, seed=0)
    assert result["mean_return"] == 3 * 7 - 3 * 3 and result["mean_length"] == 6  # raw, not 1 − 1 + …
    # FIRE (1) on the two steps after each lost life (steps 2 and 4), the policy's action (3) otherwise; none
    # after the game's end, where the last life goes too.
    assert [int(a[0]) for a in games.sent] == [3, 3, 1, 1, 1, 1]


def test_frame_replay_rebuilds_the_stacks_ale_returned() -> None:
    """Real Pong frames with short episodes (truncated at 200 frames = 50 steps), autoreset steps and a buffer
    that wraps around: every sampleable slot rebuilds exactly the obs and next obs the env returned."""
    num_envs, steps = 2, 130
    envs = make_atari_vec_env("ALE/Pong-v5", num_envs, max_num_frames_per_episode=200)
    frames = FrameReplayBuffer(96 * num_envs, num_envs, (4, 84, 84), torch.uint8, CPU, n_step=3)
    naive = ReplayBuffer(96 * num_envs, num_envs, (4, 84, 84), torch.uint8, CPU, n_step=3)
    obs, _ = envs.reset(seed=0)
    autoreset = np.zeros(num_envs, dtype=bool)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        actions = rng.integers(6, size=num_envs)
        next_obs, rewards, terminated, truncated, info = envs.step(actions)
        row = [torch.as_tensor(x) for x in (obs, actions, rewards.astype(np.float32), next_obs,
                                            terminated | info["life_lost"], truncated, ~autoreset)]
        frames.add(*row)
        naive.add(*row)
        obs, autoreset = next_obs, terminated | truncated
    envs.close()
    assert frames.full and naive.full and frames.row == naive.row
    assert naive.episode_end.any() and (~naive.valid).any()  # episodes ended, autoreset steps were recorded
    flat = torch.arange(len(frames))
    sampleable = flat[frames._sampleable(flat)]
    assert len(sampleable) > 0.9 * len(flat) - 4 * num_envs
    mine, reference = frames._batch_at(sampleable), naive._batch_at(sampleable)
    for name in ("obs", "next_obs", "actions", "returns", "bootstrap"):
        assert torch.equal(getattr(mine, name), getattr(reference, name)), name


TINY_ATARI = ["device=cpu", "tracking.mode=disabled", "trainer.progress=false", "env.num_envs=2",
              "env.kwargs.max_num_frames_per_episode=400", "trainer.eval_episodes=1", "model.compile=false",
              "model.bf16=false", "trainer.log_every=32"]


@pytest.mark.parametrize("config, overrides", [
    ("dqn/pong", ["agent.buffer_size=512", "agent.learning_starts=64", "agent.batch_size=8",
                  "agent.train_frequency=4", "trainer.max_steps=160", "trainer.eval_every=160"]),
    ("pqn/breakout", ["agent.rollout_steps=8", "agent.minibatches=2", "trainer.max_steps=64",
                      "trainer.eval_every=64"]),
])
def test_atari_learners_run_end_to_end_on_a_cpu(config: str, overrides: list[str], tmp_path, capsys) -> None:
    trainer = Trainer(load_config(config, TINY_ATARI + overrides), None)
    if config.startswith("dqn"):
        assert isinstance(trainer.task.buffer, FrameReplayBuffer)
    result = trainer.fit()
    assert trainer.updates > 0 and result["step"] >= 64
    assert np.isfinite(result["eval"]["eval/mean_return"])
    assert result["eval"]["eval/mean_length"] == 100  # 400 frames / frame-skip 4: truncated full-game evaluation


@pytest.mark.parametrize("overlap", [True, False])
def test_dqn_stores_the_games_it_played_also_with_the_env_step_in_flight(overlap: bool) -> None:
    """With `agent.overlap_env` the envs play a step while the learner updates; every stored (stack, action)
    pair must still be the game's, across episode ends: replaying the stored actions in fresh games with the seed
    gives the stacks."""
    trainer = Trainer(load_config("dqn/pong", TINY_ATARI + [
        "agent.buffer_size=512", "agent.learning_starts=16", "agent.batch_size=8", "agent.train_frequency=2",
        "trainer.max_steps=64", f"agent.overlap_env={str(overlap).lower()}",
        "env.kwargs.max_num_frames_per_episode=80"]), None)  # 20-step episodes
    in_flight = []
    trainer.callbacks.append(lambda t: in_flight.append(t.task.runner.in_flight is not None))
    trainer.fit()
    assert trainer.updates > 0
    assert in_flight == [overlap] * len(in_flight)  # the next step plays while the Trainer updates
    buffer, num_envs = trainer.task.buffer, trainer.task.runner.num_envs
    rows = len(buffer) // num_envs
    stored = buffer._batch_at(torch.arange(rows * num_envs))
    assert rows == 32 and bool((~buffer.valid[:rows]).any())  # 64 steps of 2 envs, autoreset steps among them
    envs = make_vec_env("ALE/Pong-v5", num_envs, **trainer.config.env.kwargs)
    obs, _ = envs.reset(seed=trainer.config.seed)
    actions = stored.actions.view(rows, num_envs)
    for row in range(rows):
        assert torch.equal(stored.obs.view(rows, num_envs, 4, 84, 84)[row], torch.as_tensor(obs)), row
        obs = envs.step(actions[row].numpy())[0]
    envs.close()


def test_an_overlapped_dqn_stops_and_resumes_with_a_step_in_flight(tmp_path) -> None:
    config = load_config("dqn/pong", TINY_ATARI + [
        "agent.buffer_size=512", "agent.learning_starts=16", "agent.batch_size=8", "agent.train_frequency=2",
        "trainer.max_steps=96"])
    stop_at_48 = [lambda t: t.request_stop() if t.step >= 48 else None]
    with pytest.raises(TrainingInterrupted) as stopped:
        Trainer(config, tmp_path, callbacks=stop_at_48).fit()
    assert stopped.value.checkpoint.name == "step_000000048"
    resumed = Trainer(config, tmp_path)
    result = resumed.fit(resume_from=find_checkpoint(tmp_path, "latest"))
    assert result["step"] == 96 and resumed.task.runner.env_steps == 96 and resumed.task.runner.in_flight is None
    assert len(resumed.task.buffer) == 96 + 2  # the steps, and the row that closes the episodes cut by the stop


def test_atari_runs_evaluate_from_the_cli_and_the_play_window_declines_them(tmp_path, capsys) -> None:
    run_dir = tmp_path / "pong"
    overrides = TINY_ATARI + ["agent.rollout_steps=8", "agent.minibatches=2", "trainer.max_steps=32"]
    assert main(["train", "pqn/pong", *overrides, "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "2", "--json"]) == 0
    assert '"episodes": 2' in capsys.readouterr().out
    assert main(["play", str(run_dir), "--record", str(tmp_path / "pong.mp4")]) == 2
    assert "is an Atari agent" in capsys.readouterr().err
    assert not (tmp_path / "pong.mp4").exists()


def test_atari_option_values_from_python_may_be_numpy_numbers() -> None:
    from envs.atari import check_atari_options

    check_atari_options({"stack_num": np.int64(4), "repeat_action_probability": np.float32(0.25),
                         "maxpool": np.bool_(True), "noop_max": 0})


@pytest.mark.parametrize("option, message", [
    ("stack_num=0", "env.kwargs.stack_num = 0: must be an integer ≥ 1"),  # ale-py would hang
    ("frameskip=2.5", "env.kwargs.frameskip = 2.5: must be an integer ≥ 1"),
    ("maxpool=maybe", "env.kwargs.maxpool = 'maybe': must be true or false"),
    ("repeat_action_probability=1.5", "must be a probability in [0, 1]"),
    ("noop_max=-1", "env.kwargs.noop_max = -1: must be an integer ≥ 0"),
    ("grayscale=false", "must be true: the lab's Atari learners read stacks of grey frames"),
])
def test_atari_option_values_are_checked(option: str, message: str) -> None:
    config = load_config("pqn/pong", ["device=cpu", "env.num_envs=2", f"env.kwargs.{option}"])
    with pytest.raises(LabError, match=re.escape(message)):
        Trainer(config, None)
