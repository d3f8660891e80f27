"""Tests for the lab's own pygame games in envs/games: checkers, seeding, episode ends, rules,
rendering, keyboard mapping, scripted play and Stable-Baselines3 DQN."""
import os

os.environ["SDL_VIDEODRIVER"] = "dummy"  # pygame renders without a display

import copy
import importlib
import json
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3 import DQN
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs.games
from envs.games import GAMES
from envs.games import catch, snake

GAME_IDS = sorted(GAMES)
STATE_IDS = ["lab/Catch-v0", "lab/Snake-v0"]
PIXEL_IDS = ["lab/CatchPixels-v0", "lab/SnakePixels-v0"]


def test_every_variant_is_registered_once():
    assert set(GAME_IDS) == set(STATE_IDS + PIXEL_IDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium warns when an id is registered again
        importlib.reload(envs.games)
    for env_id in GAME_IDS:
        assert gym.spec(env_id).max_episode_steps is not None


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_gymnasium_checker_passes_without_warnings(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gymnasium_check_env(env.unwrapped)  # also renders every declared render mode
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gymnasium_check_env(env)
    # The one warning left says that gym.make wrapped the env, which is what it is meant to do.
    assert [str(w.message) for w in caught if "different from the unwrapped version" not in str(w.message)] == []
    env.close()


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_stable_baselines3_checker_passes_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(gym.make(env_id), warn=True)


def rollout(env_id: str, seed: int, actions: np.ndarray) -> list:
    """Plays the actions from a seeded reset, starting a new (unseeded) episode whenever one ends."""
    env = gym.make(env_id)
    observation, _ = env.reset(seed=seed)
    trajectory = [observation]
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        trajectory += [observation, reward, terminated, truncated]
        if terminated or truncated:
            observation, _ = env.reset()
            trajectory.append(observation)
    return trajectory


def same_trajectory(first: list, second: list) -> bool:
    return len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_same_seed_same_trajectory_and_other_seed_differs(env_id):
    actions = np.random.default_rng(0).integers(gym.make(env_id).action_space.n, size=150)
    assert same_trajectory(rollout(env_id, 7, actions), rollout(env_id, 7, actions))
    assert not same_trajectory(rollout(env_id, 7, actions), rollout(env_id, 8, actions))


def play(env: gym.Env, actions: np.ndarray) -> None:
    for action in actions:
        if any(env.step(action)[2:4]):
            env.reset()


def assert_lockstep(envs: list[gym.Env], actions: np.ndarray) -> None:
    """Steps every env with the same actions, resetting them all when an episode ends, and checks they agree."""
    for action in actions:
        steps = [list(env.step(action)[:4]) for env in envs]
        assert all(same_trajectory(steps[0], other) for other in steps[1:])
        if any(steps[0][2:4]):
            observations = [env.reset()[0] for env in envs]
            assert all(np.array_equal(observations[0], other) for other in observations[1:])


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_a_copy_resumes_bit_for_bit(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    actions = np.random.default_rng(1).integers(env.action_space.n, size=80)
    env.reset(seed=3)
    play(env, actions[:40])
    env.render()  # copying must leave the pygame surface behind
    assert_lockstep([env, copy.deepcopy(env), pickle.loads(pickle.dumps(env))], actions[40:])


def json_snapshot(game: gym.Env) -> str:
    """What a JSON checkpoint of a game holds: its public attributes with JSON values and its RNG's state."""
    attributes = {}
    for name, value in vars(game).items():
        if name.startswith("_"):  # rendering handles, and the RNG saved below
            continue
        try:
            json.dumps(value)
        except TypeError:  # spaces and the spec: made by the constructor, no part of the game state
            continue
        attributes[name] = value
    return json.dumps({"attributes": attributes, "rng": game.np_random.bit_generator.state})


def json_restore(env_id: str, snapshot: str) -> gym.Env:
    env = gym.make(env_id)
    env.reset(seed=12345)  # another game, overwritten below
    saved = json.loads(snapshot)
    for name, value in saved["attributes"].items():
        setattr(env.unwrapped, name, value)
    env.unwrapped.np_random.bit_generator.state = saved["rng"]
    return env


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_a_json_snapshot_of_the_public_attributes_resumes_bit_for_bit(env_id):
    env = gym.make(env_id)
    actions = np.random.default_rng(2).integers(env.action_space.n, size=80)
    env.reset(seed=4)
    play(env, actions[:40])
    snapshot = json_snapshot(env.unwrapped)
    restored = json_restore(env_id, snapshot)
    for name in json.loads(snapshot)["attributes"]:  # a tuple would come back as an unequal list
        assert getattr(restored.unwrapped, name) == getattr(env.unwrapped, name), name
    assert_lockstep([env, restored], actions[40:])


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_step_limit_truncates_without_terminating(env_id):
    env = gym.make(env_id, max_episode_steps=3)
    env.reset(seed=0)
    ends = [env.step(0)[2:4] for _ in range(3)]  # no-op: neither game can be lost in 3 steps
    assert ends == [(False, False), (False, False), (False, True)]


def test_snake_crashing_into_the_wall_terminates():
    env = gym.make("lab/Snake-v0")
    env.reset(seed=0)
    for _ in range(env.unwrapped.grid_size):
        _, reward, terminated, truncated, _ = env.step(snake.NOOP)
        if terminated:
            break
    assert (reward, terminated, truncated) == (-1.0, True, False)


def test_snake_rules_body_tail_and_turning_back():
    game = snake.SnakeEnv()
    game.reset(seed=0)
    up, left = 1, 4
    game.apple = [0, 0]

    game.snake, game.heading = [[5, 5], [5, 4], [4, 4], [4, 5], [4, 6]], 1
    assert game.step(up)[1:3] == (-1.0, True)  # [4, 5] is body that stays

    game.snake, game.heading = [[5, 5], [5, 4], [4, 4], [4, 5]], 1
    assert game.step(up)[1:3] == (0.0, False)  # [4, 5] is the tail, which moves away
    assert game.snake == [[4, 5], [5, 5], [5, 4], [4, 4]]

    game.snake, game.heading = [[5, 5], [5, 4], [5, 3]], 1
    game.step(left)  # turning back onto the neck is ignored
    assert game.snake[0] == [5, 6] and game.heading == 1  # still right

    game.apple = [5, 7]
    _, reward, terminated, _, info = game.step(snake.NOOP)
    assert (reward, terminated, info["score"], len(game.snake)) == (1.0, False, 1, 4)
    assert game.apple not in game.snake


def test_catch_losing_every_life_terminates():
    env = gym.make("lab/Catch-v0")
    env.reset(seed=0)
    total, terminated, truncated = 0.0, False, False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(catch.STAY)
        total += reward
    assert (terminated, truncated, info["lives"]) == (True, False, 0)
    assert total <= -catch.LIVES + info["score"]


@pytest.mark.parametrize(
    "column_offset, is_bomb, expected_reward, lives_lost",
    [(0, False, 1.0, 0), (3, False, -1.0, 1), (1, True, -1.0, 1), (-2, True, 0.0, 0)],
)
def test_catch_rules(column_offset, is_bomb, expected_reward, lives_lost):
    game = catch.CatchEnv()
    game.reset(seed=0)
    game.paddle = 4
    game.objects = [[catch.PADDLE_ROW - 1, game.paddle + column_offset, is_bomb]]
    _, reward, _, _, info = game.step(catch.STAY)
    assert reward == expected_reward
    assert info["lives"] == catch.LIVES - lives_lost
    assert all(row < catch.PADDLE_ROW for row, _, _ in game.objects)


@pytest.mark.parametrize("env_id", GAME_IDS)
def test_rgb_array_render_draws_the_game(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    env.step(0)
    second = env.render()
    env.close()
    game = env.unwrapped
    expected_shape = (
        (game.grid_size * snake.CELL_PIXELS,) * 2
        if isinstance(game, snake.SnakeEnv)
        else ((catch.HEIGHT + 1) * catch.CELL_PIXELS, catch.WIDTH * catch.CELL_PIXELS)
    )
    assert first.shape == expected_shape + (3,) and first.dtype == np.uint8
    assert len(np.unique(first.reshape(-1, 3), axis=0)) >= 3  # background and at least two kinds of things
    assert not np.array_equal(first, second)  # something moved


@pytest.mark.parametrize("env_id", PIXEL_IDS)
def test_pixel_observation_shows_the_game_state(env_id):
    env = gym.make(env_id)
    observation, _ = env.reset(seed=0)
    game = env.unwrapped
    scale = game.pixel_scale
    if isinstance(game, snake.SnakeEnv):
        (head_row, head_column), (apple_row, apple_column) = game.snake[0], game.apple
        assert tuple(observation[head_row * scale, head_column * scale]) == snake.HEAD_COLOR
        assert tuple(observation[apple_row * scale, apple_column * scale]) == snake.APPLE_COLOR
    else:
        row, column, is_bomb = game.objects[0]
        object_color = catch.BOMB_COLOR if is_bomb else catch.FRUIT_COLOR
        assert tuple(observation[(1 + row) * scale, column * scale]) == object_color
        assert tuple(observation[(1 + catch.PADDLE_ROW) * scale, game.paddle * scale]) == catch.PADDLE_COLOR
        assert tuple(observation[0, (catch.LIVES - 1) * scale]) == catch.LIFE_COLOR


@pytest.mark.parametrize("env_id", ["lab/Catch-v0", "lab/Snake-v0"])
def test_keys_to_action_maps_key_codes_to_every_action_with_a_no_op(env_id):
    env = gym.make(env_id)
    mapping = env.unwrapped.get_keys_to_action()
    assert mapping[()] == 0  # no key pressed: the no-op
    for keys, action in mapping.items():
        assert isinstance(keys, tuple) and all(isinstance(key, int) for key in keys)
        assert list(keys) == sorted(keys)  # gymnasium.utils.play looks up sorted key tuples
        assert env.action_space.contains(action)
    assert set(mapping.values()) == set(range(env.action_space.n))


def catch_chase_policy(game: catch.CatchEnv) -> int:
    """Moves under the lowest fruit, ignoring bombs."""
    fruit_columns = [column for _, column, is_bomb in game.objects if not is_bomb]
    if not fruit_columns:
        return catch.STAY
    if fruit_columns[0] < game.paddle:
        return catch.LEFT
    if fruit_columns[0] >= game.paddle + catch.PADDLE_WIDTH:
        return catch.RIGHT
    return catch.STAY


def snake_greedy_policy(game: snake.SnakeEnv) -> int:
    """Takes the safe direction that brings the head closest to the apple."""
    head_row, head_column = game.snake[0]

    def apple_distance(direction: int) -> int:
        row_step, column_step = snake.DIRECTIONS[direction]
        return abs(game.apple[0] - head_row - row_step) + abs(game.apple[1] - head_column - column_step)

    def safe(direction: int) -> bool:
        row_step, column_step = snake.DIRECTIONS[direction]
        row, column = head_row + row_step, head_column + column_step
        inside = 0 <= row < game.grid_size and 0 <= column < game.grid_size
        return inside and [row, column] not in game.snake[:-1]

    candidates = [d for d in range(len(snake.DIRECTIONS)) if d != (game.heading + 2) % 4 and safe(d)]
    return 1 + min(candidates or [game.heading], key=apple_distance)


def play_episode(env_id: str, seed: int, policy) -> tuple[float, int]:
    """Returns the episode's return and the game's score (fruit caught or apples eaten)."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(policy(env))
        total += reward
        done = terminated or truncated
    return total, info["score"]


def test_catch_chasing_fruit_scores_and_random_play_does_not():
    chase = [play_episode("lab/Catch-v0", seed, lambda env: catch_chase_policy(env.unwrapped))[0] for seed in range(10)]
    random_play = [play_episode("lab/Catch-v0", seed, lambda env: env.action_space.sample())[0] for seed in range(10)]
    assert np.mean(chase) > 5.0
    assert np.mean(random_play) < 0.0


def test_snake_greedy_path_eats_apples_and_random_play_does_not():
    greedy = [play_episode("lab/Snake-v0", seed, lambda env: snake_greedy_policy(env.unwrapped)) for seed in range(10)]
    random_play = [play_episode("lab/Snake-v0", seed, lambda env: env.action_space.sample())[0] for seed in range(10)]
    assert min(score for _, score in greedy) >= 1
    assert np.mean([total for total, _ in greedy]) > 5.0
    assert np.mean(random_play) < 0.0


@pytest.fixture
def one_torch_thread():
    # Tiny batches run many times faster on one thread than split over the cores.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def dqn_learns(env_id: str, policy: str, **dqn_kwargs) -> None:
    model = DQN(policy, gym.make(env_id), learning_starts=50, train_freq=4, seed=0, device="cpu", **dqn_kwargs)
    initial = [parameter.detach().clone() for parameter in model.q_net.parameters()]
    model.learn(total_timesteps=300)
    assert model.num_timesteps == 300
    assert any(not torch.equal(before, after) for before, after in zip(initial, model.q_net.parameters()))


@pytest.mark.parametrize("env_id", STATE_IDS)
def test_sb3_dqn_trains_on_the_state_variant(env_id, one_torch_thread):
    dqn_learns(env_id, "MlpPolicy", buffer_size=1_000, batch_size=32)


@pytest.mark.parametrize("env_id", PIXEL_IDS)
def test_sb3_dqn_trains_on_the_pixel_variant(env_id, one_torch_thread):
    dqn_learns(env_id, "CnnPolicy", buffer_size=300, batch_size=16)
