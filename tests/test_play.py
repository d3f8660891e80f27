"""`lab play`: the player state machine driven by synthetic key events, the overlay, recordings, the W&B
episode video, keyboard play of the lab's games and Atari, a real window under Xvfb, and bad input."""
import os

os.environ["SDL_VIDEODRIVER"] = "dummy"

import select  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gymnasium as gym  # noqa: E402
import imageio.v2 as imageio  # noqa: E402
import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from envs.factory import make_env  # noqa: E402
from envs.play.controls import Controls, action_names, controls_for  # noqa: E402
from envs.play.overlay import AGENT_BADGE, BACKGROUND, CHOSEN, HUMAN_BADGE, Overlay, fit  # noqa: E402
from envs.play.player import SPEEDS, Player, QAgent  # noqa: E402
from envs.play.recording import record_episode  # noqa: E402
from lab.cli import main  # noqa: E402
from lab.runs import load_trained_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("play") / "cartpole"
    assert main(["train", "dqn/cartpole", "device=cpu", "tracking.mode=disabled", "trainer.progress=false",
                 "trainer.max_steps=300", "trainer.eval_every=300", "trainer.eval_episodes=1",
                 "agent.learning_starts=50", "model.hidden=[16]", "--run-dir", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def task(run_dir: Path):
    task, _, _ = load_trained_task(run_dir, "best", "cpu")
    yield task
    task.close()


class ActionLog(gym.Wrapper):
    """Records every action the env receives and counts resets."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[int] = []
        self.resets = 0

    def step(self, action):
        self.actions.append(int(action))
        return super().step(action)

    def reset(self, **kwargs):
        self.resets += 1
        return super().reset(**kwargs)


def key(kind: int, code: int) -> pygame.event.Event:
    return pygame.event.Event(kind, key=code)


def down(code: int) -> pygame.event.Event:
    return key(pygame.KEYDOWN, code)


def up(code: int) -> pygame.event.Event:
    return key(pygame.KEYUP, code)


@pytest.fixture
def player(task) -> Player:
    env = ActionLog(make_env("CartPole-v1", render_mode="rgb_array"))
    yield Player(env, QAgent(task.model, task.device), seed=0, fps=50)
    env.close()


# --- the state machine --------------------------------------------------------------------------------------------


def test_the_agent_plays_its_greedy_action_on_the_shown_observation(player: Player) -> None:
    for _ in range(4):
        q = QAgent(player.agent.model, player.agent.device).q_values(player.obs)
        np.testing.assert_allclose(player.q_values, q)
        assert player.tick()
        assert player.env.actions[-1] == int(q.argmax())
    assert player.step == 4 and player.episode_return == 4.0 and not player.human


def test_pause_stops_stepping_and_right_steps_exactly_one(player: Player) -> None:
    player.tick()
    assert player.tick([down(pygame.K_SPACE)]) is False and player.paused
    for _ in range(5):
        assert player.tick() is False
    assert len(player.env.actions) == 1 and player.step == 1
    assert player.tick([down(pygame.K_RIGHT)]) is True
    for _ in range(3):
        player.tick()
    assert len(player.env.actions) == 2 and player.step == 2 and player.paused
    player.tick([down(pygame.K_PERIOD)])  # the step key's alias
    assert len(player.env.actions) == 3
    player.tick([down(pygame.K_p)])  # pause's alias resumes
    assert not player.paused and player.tick() and len(player.env.actions) == 5


def test_takeover_applies_the_humans_keys_then_the_agent_takes_back(player: Player) -> None:
    player.tick()
    player.tick([down(pygame.K_h)])
    assert player.human
    steps = len(player.env.actions)
    player.tick([down(pygame.K_LEFT)])
    player.tick([up(pygame.K_LEFT), down(pygame.K_RIGHT)])
    assert player.env.actions[steps:] == [0, 1]
    assert not player.paused  # while a person plays, the right arrow pushes the cart instead of stepping
    player.tick([up(pygame.K_RIGHT)])  # CartPole has no "do nothing": with no key held the game waits
    assert len(player.env.actions) == steps + 2 and player.action is None
    player.handle(down(pygame.K_LEFT))  # a tap shorter than a step still counts
    player.handle(up(pygame.K_LEFT))
    player.tick()
    assert player.env.actions[-1] == 0 and len(player.env.actions) == steps + 3

    player.tick([down(pygame.K_h)])
    assert not player.human
    planned = player.agent_action
    assert planned == int(player.q_values.argmax()) and player.tick()
    assert player.env.actions[-1] == planned


def test_reset_starts_a_fresh_episode_from_the_next_seed(player: Player) -> None:
    for _ in range(3):
        player.tick()
    player.handle(down(pygame.K_r))
    assert player.step == 0 and player.episode_return == 0.0 and player.env.resets == 2
    assert player.returns == [] and player.episode == 1  # an episode cut short is not counted
    fresh, _ = make_env("CartPole-v1").reset(seed=1)
    np.testing.assert_array_equal(player.obs, fresh)


def test_speed_keys_double_and_halve_within_bounds(player: Player) -> None:
    player.tick([down(pygame.K_PLUS)])
    assert player.speed == 2.0 and player.steps_per_second == 100
    player.tick([down(pygame.K_EQUALS)])  # '+' unshifted
    assert player.speed == 4.0
    player.tick([down(pygame.K_MINUS)] * 3)
    assert player.speed == 0.5
    player.tick([down(pygame.K_MINUS)] * 20)
    assert player.speed == SPEEDS[0]
    player.tick([down(pygame.K_KP_PLUS)] * 20)
    assert player.speed == SPEEDS[-1]


@pytest.mark.parametrize("event", [down(pygame.K_q), down(pygame.K_ESCAPE), pygame.event.Event(pygame.QUIT)])
def test_quit_finishes_without_another_step(player: Player, event: pygame.event.Event) -> None:
    player.tick()
    assert player.tick([event]) is False and player.finished
    assert player.tick() is False and len(player.env.actions) == 1


def test_episodes_end_at_max_steps_and_show_their_last_frame(task) -> None:
    env = ActionLog(make_env("CartPole-v1", render_mode="rgb_array"))
    player = Player(env, QAgent(task.model, task.device), episodes=2, max_steps=4, seed=0)
    for _ in range(4):
        player.tick()
    assert player.episode_over and player.step == 4 and player.episode == 1 and env.resets == 1
    player.tick()  # the next advance starts episode 2
    assert not player.episode_over and player.step == 0 and player.episode == 2 and env.resets == 2
    while player.tick():
        pass
    assert player.finished and player.returns == [4.0, 4.0] and player.lengths == [4, 4] and len(env.actions) == 8


def test_epsilon_one_takes_random_actions(task) -> None:
    env = ActionLog(make_env("CartPole-v1", render_mode="rgb_array"))
    player = Player(env, QAgent(task.model, task.device), epsilon=1.0, seed=0, max_steps=40)
    explored = []
    for _ in range(40):
        explored.append(player.explored)
        player.tick()
    assert all(explored) and set(env.actions) == {0, 1}


def test_a_person_plays_catch_alone() -> None:
    env = ActionLog(make_env("lab/Catch-v0", render_mode="rgb_array"))
    player = Player(env, seed=0)
    assert player.human and player.q_values is None
    player.tick()  # no key: Catch's own "stay"
    player.tick([down(pygame.K_RIGHT)])
    player.tick([up(pygame.K_RIGHT), down(pygame.K_a)])
    assert env.actions == [0, 2, 1]
    player.tick([down(pygame.K_h)])  # no agent to hand over to
    assert player.human
    player.tick([up(pygame.K_a), down(pygame.K_SPACE)])
    assert player.paused  # space is not one of Catch's keys


def test_game_keys_win_over_the_labs_keys_while_a_person_plays() -> None:
    env = ActionLog(make_env("ALE/Breakout-v5", render_mode="rgb_array"))
    player = Player(env, seed=0)
    player.tick([down(pygame.K_SPACE)])  # Atari names its keys by character: ' ' is FIRE
    assert not player.paused and env.actions == [1]
    player.tick([up(pygame.K_SPACE), down(pygame.K_a)])
    assert env.actions[-1] == 3  # LEFT
    player.tick([up(pygame.K_a)])
    assert env.actions[-1] == 0  # no key: NOOP
    player.tick([down(pygame.K_p)])
    assert player.paused  # the alias that works in every game

    snake = Player(make_env("lab/Snake-v0", render_mode="rgb_array"), seed=0)
    snake.tick([down(pygame.K_s)])
    assert not snake.screenshot_requested and snake.last_action == 3  # s steers the snake down
    snake.tick([down(pygame.K_F12)])
    assert snake.screenshot_requested
    # The window's key help names only the keys that still reach the lab: not s, not the arrows, not space.
    assert Overlay(snake, "lab/Snake-v0", "you play")._help(snake)[1:] == [
        "space/p: pause   .: one step", "+/-: speed   r: reset", "F12: screenshot   q/esc: quit"]
    assert Overlay(player, "ALE/Breakout-v5", "you play")._help(player)[1] == "p: pause   right/.: one step"


def test_controls_and_action_names() -> None:
    cartpole = make_env("CartPole-v1")
    controls = controls_for(cartpole)
    assert controls.action({pygame.K_LEFT}) == 0 and controls.action({pygame.K_RIGHT}) == 1
    assert controls.action(set()) is None and action_names(cartpole) == ["push left", "push right"]
    mountain_car = controls_for(make_env("MountainCar-v0"))  # its own mapping has pygame 1 key codes
    assert mountain_car.action({pygame.K_LEFT}) == 0 and mountain_car.action(set()) == 1
    assert action_names(make_env("ALE/Pong-v5"))[:2] == ["noop", "fire"]

    class Plain(gym.Env):
        action_space = gym.spaces.Discrete(3)
        observation_space = gym.spaces.Discrete(1)

    assert controls_for(Plain()) == Controls({(pygame.K_1,): 0, (pygame.K_2,): 1, (pygame.K_3,): 2}, None)
    assert action_names(Plain()) == ["action 0", "action 1", "action 2"]
    from lab.errors import LabError

    with pytest.raises(LabError, match="keyboard play needs Discrete"):
        controls_for(make_env("MountainCarContinuous-v0"))


# --- drawing ------------------------------------------------------------------------------------------------------


def colour_count(pixels: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(pixels == np.array(colour, dtype=np.uint8), axis=-1).sum())


def test_overlay_draws_the_game_beside_the_panel(player: Player) -> None:
    overlay = Overlay(player, "CartPole-v1", "test")
    canvas = pygame.surfarray.array3d(overlay.draw(fps=50.0)).swapaxes(0, 1)
    assert canvas.shape[1] % 16 == 0 and canvas.shape[0] % 16 == 0
    g, p = overlay.game_rect, overlay.panel_rect
    game, panel = canvas[g.top:g.bottom, g.left:g.right], canvas[p.top:p.bottom, p.left:p.right]
    assert colour_count(game, (255, 255, 255)) > 0.5 * g.width * g.height  # CartPole's white sky
    assert colour_count(game, (0, 0, 0)) > 100  # the cart
    assert colour_count(panel, CHOSEN) > 200 and colour_count(panel, AGENT_BADGE) > 100
    assert colour_count(panel, HUMAN_BADGE) == 0

    player.tick([down(pygame.K_h)])
    panel = pygame.surfarray.array3d(overlay.draw()).swapaxes(0, 1)[p.top:p.bottom, p.left:p.right]
    assert colour_count(panel, HUMAN_BADGE) > 100 and colour_count(panel, AGENT_BADGE) == 0

    window = pygame.Surface((400, 600))  # a tall window: the view keeps its aspect ratio, centred
    fit(overlay.canvas, window)
    pixels = pygame.surfarray.array3d(window).swapaxes(0, 1)
    height = round(overlay.size[1] * 400 / overlay.size[0])
    top = (600 - height) // 2
    assert colour_count(pixels[: top - 1], BACKGROUND) == (top - 1) * 400
    assert colour_count(pixels[top + 2: top + height - 2], BACKGROUND) < 0.5 * 400 * height


# --- recording ----------------------------------------------------------------------------------------------------


def test_record_gif_has_one_frame_per_step_plus_one_per_episode(run_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out.gif"
    assert main(["play", str(run_dir), "--record", str(out), "--episodes", "2", "--max-steps", "5"]) == 0
    frames = imageio.mimread(out)
    assert len(frames) == 2 * (5 + 1) and frames[0].shape[:2] == (480, 1040)
    assert "episode 2: return 5.00 in 5 steps" in capsys.readouterr().out


def test_record_mp4_plays_the_episodes_lab_eval_plays(run_dir: Path, task, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub" / "out.mp4"
    assert main(["play", str(run_dir), "--record", str(out), "--episodes", "2"]) == 0
    printed = capsys.readouterr().out
    lengths = [int(line.split(" in ")[1].split()[0]) for line in printed.splitlines() if line.startswith("episode")]
    returns = [float(line.split("return ")[1].split()[0]) for line in printed.splitlines()
               if line.startswith("episode")]
    assert imageio.get_reader(out).count_frames() == sum(lengths) + 2
    assert np.mean(returns) == pytest.approx(task.evaluate(2)["mean_return"])


def test_record_episode_gives_the_wandb_video_of_the_first_eval_episode(task) -> None:
    task.model.train()
    frames = record_episode(task, max_frames=4)
    assert frames.shape == (4, 480, 1040, 3) and frames.dtype == np.uint8
    assert task.model.training  # the training mode it found is restored
    task.model.eval()
    full = record_episode(task, max_frames=10_000)
    assert len(full) == task.evaluate(1)["mean_length"] + 1
    assert not np.array_equal(full[0], full[-1])


def test_a_video_that_cannot_be_drawn_does_not_fail_the_run(task, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import pygame

    import envs.play.recording as recording

    def no_display(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise pygame.error("windows not available")

    class Tracker:
        wandb_run, videos = object(), []

        def log_video(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            self.videos.append(args)

    monkeypatch.setattr(recording, "record_episode", no_display)
    monkeypatch.setattr(task, "evaluation_is_final", True)
    tracker = Tracker()
    task.log_media(tracker, step=300)
    assert tracker.videos == [] and "note: no eval video for W&B (windows not available)" in capsys.readouterr().err


def test_rendering_for_a_recording_prints_no_display_errors_and_leaves_the_environment() -> None:
    """Without a display, SDL probing for one prints errors amid a training run's output (W&B's eval video)."""
    script = ("import os, gymnasium as gym\n"
              "from envs.play.recording import drawing_off_screen\n"
              "with drawing_off_screen():\n"
              "    env = gym.make('CartPole-v1', render_mode='rgb_array'); env.reset(seed=0)\n"
              "    assert env.render().shape == (400, 600, 3); env.close()\n"
              "assert 'SDL_VIDEODRIVER' not in os.environ\n")
    no_display = {k: v for k, v in os.environ.items()
                  if k not in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**no_display, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "error" not in (done.stdout + done.stderr).lower()
    # A driver set for a display that is not there, or set empty, is left to a window, not to off-screen drawing.
    for chosen in ("x11", ""):
        kept = script.replace("assert 'SDL_VIDEODRIVER' not in os.environ",
                              f"assert os.environ['SDL_VIDEODRIVER'] == {chosen!r}")
        done = subprocess.run([sys.executable, "-c", kept], capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**no_display, "PYTHONPATH": str(ROOT), "SDL_VIDEODRIVER": chosen})
        assert done.returncode == 0, done.stderr


# --- the command --------------------------------------------------------------------------------------------------


def test_a_person_plays_catch_headless_with_scripted_keys(tmp_path: Path) -> None:
    assert main(["play", "lab/Catch-v0", "--human", "--fps", "30", "--seed", "0", "--screenshot-dir", str(tmp_path),
                 "--script", "2:right 3:right 4:right 12:s 13:q"]) == 0
    (shot,) = tmp_path.glob("play-lab-Catch-v0-*.png")
    pixels = imageio.imread(shot)[..., :3]
    game = Overlay(Player(make_env("lab/Catch-v0", render_mode="rgb_array")), "", "").game_rect
    area = pixels[game.top:game.bottom, game.left:game.right]
    paddle_x = np.nonzero(np.all(area == (235, 235, 235), axis=-1))[1]
    # The paddle starts on columns 4-5 of 10 (centre 5.0); each step of "right" moves it one column.
    assert paddle_x.size > 0 and paddle_x.mean() / game.width * 10 >= 5.9


@pytest.fixture
def x_display():
    """A display of our own Xvfb, on a number it picks itself (-displayfd) so parallel runs never collide."""
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb")
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        # Xvfb writes the number and its newline separately, and dies if the pipe closes in between.
        text = b""
        while not text.endswith(b"\n") and select.select([read], [], [], 15)[0]:
            chunk = os.read(read, 16)
            if not chunk:  # Xvfb exited
                break
            text += chunk
        if not text.endswith(b"\n"):
            pytest.fail("Xvfb did not start")
        yield f":{text.decode().strip()}"
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
        os.close(read)


def test_window_on_a_real_display_draws_game_and_overlay(run_dir: Path, tmp_path: Path, x_display: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SDL_VIDEODRIVER"}  # a real X11 window this time
    env["DISPLAY"] = x_display
    result = subprocess.run(
        [sys.executable, "-m", "lab", "play", str(run_dir), "--max-steps", "8", "--screenshot-dir", str(tmp_path),
         "--script", "4:s 6:q"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (shot,) = tmp_path.glob("play-CartPole-v1-*.png")
    pixels = imageio.imread(shot)[..., :3]
    player = Player(make_env("CartPole-v1", render_mode="rgb_array"), QAgent(torch.nn.Linear(4, 2), "cpu"))
    overlay = Overlay(player, "", "")
    assert pixels.shape[:2] == overlay.size[::-1]
    g, p = overlay.game_rect, overlay.panel_rect
    game, panel = pixels[g.top:g.bottom, g.left:g.right], pixels[p.top:p.bottom, p.left:p.right]
    assert colour_count(game, (255, 255, 255)) > 0.5 * g.width * g.height and colour_count(game, (0, 0, 0)) > 100
    assert colour_count(panel, CHOSEN) > 200 and colour_count(panel, AGENT_BADGE) > 100


def test_no_display_is_one_clear_error(run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    for name in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["play", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no display") and err.count("\n") == 1  # not SDL's probing errors before it


@pytest.mark.parametrize("args, message", [
    (["CartPole-v1"], "is an environment, not a run dir: add --human"),
    (["CartPol-v1", "--human"], "neither a run dir nor a registered environment (did you mean 'CartPole-v1'"),
    (["MountainCarContinuous-v0", "--human"], "keyboard play needs Discrete"),
    (["RUN", "--record", "out.avi"], "must end in .mp4, .gif"),
    (["RUN", "--record", "/proc/out.gif"], "--record /proc/out.gif: cannot write there"),
    (["RUN", "--record", "/"], "--record /: that is a folder; give a file name, e.g. /out.mp4"),
    (["RUN", "--record", "out.gif", "--human"], "drop --human"),
    (["RUN", "--episodes", "0"], "--episodes must be at least 1"),
    (["RUN", "--max-steps", "-1"], "--max-steps must be at least 1"),
    (["RUN", "--epsilon", "1.5"], "--epsilon must be in [0, 1]"),
    (["RUN", "--fps", "0"], "--fps must be a positive number"),
    (["RUN", "--fps", "nan"], "--fps must be a positive number, got nan"),
    (["RUN", "--fps", "inf"], "--fps must be a positive number, got inf"),
    (["RUN", "--seed", "-1"], "--seed must be 0 or more"),
    (["RUN", "--checkpoint", "step_9"], "no checkpoint 'step_9'"),
])
def test_bad_input_is_one_line_and_exit_2(run_dir: Path, args: list[str], message: str,
                                          capsys: pytest.CaptureFixture) -> None:
    args = [str(run_dir) if a == "RUN" else a for a in args]
    assert main(["play", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
