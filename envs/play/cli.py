"""`lab play`: watch a trained agent with its Q-values, take over from it, play any env yourself, or record."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from envs.atari import is_atari
from lab.commands import Command, register_command
from lab.errors import LabError, did_you_mean
from lab.outputs import output_file

DESCRIPTION = """\
Open a window where a trained agent plays its env, beside a panel with its Q-value for every action (the one
it takes highlighted), the episode's return and step, ε and the frame rate. Take over with h at any moment.
With --human a person plays any registered env (the lab's games, Atari, classic control) from the keyboard.
With --record the same view is written to an .mp4 or .gif without opening a window.

keys: space/p pause · right/. one step while paused · +/- speed · r reset the episode · h take over / give back
      s/F12 screenshot · q/esc quit. While you play, the game's own keys go to the game.

examples:
  lab play runs/cp                                   watch the best checkpoint play CartPole
  lab play runs/cp --record cartpole.mp4 --episodes 3
  lab play lab/Catch-v0 --human                      play Catch with the arrow keys
  lab play ALE/Breakout-v5 --human                   space fires, a/d move"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("target", metavar="RUN_DIR|ENV_ID", help="a run made by lab train, or an env id with --human")
    add("--human", action="store_true", help="you play (a run's agent still shows its Q-values; h hands it control)")
    add("--episodes", type=int, metavar="N", help="stop after N episodes (default: until q; 1 when recording)")
    add("--fps", type=float, metavar="F", help="env steps per second at speed 1x (default: the env's render_fps, else 30)")
    add("--epsilon", type=float, default=0.0, metavar="E", help="the agent's random-action rate (default 0: greedy)")
    add("--checkpoint", default="best", metavar="NAME", help="best (default), latest or a step_… directory name")
    add("--seed", type=int, metavar="S", help="episodes (and r resets) are seeded S, S+1, … (default: the run's "
                                              "evaluation seeds, so the episodes lab eval plays; random for an env)")
    add("--max-steps", type=int, metavar="N", help="end each episode after N steps")
    add("--record", type=Path, metavar="OUT.mp4|OUT.gif", help="write a video headless, no window")
    add("--screenshot-dir", type=Path, default=Path("."), metavar="DIR", help="where s saves PNGs (default: .)")
    add("--device", choices=["auto", "cpu", "cuda", "mps"], default="cpu", metavar="DEVICE",
        help="auto, cpu, cuda or mps: where the agent's network runs (default: cpu)")
    add("--script", help=argparse.SUPPRESS)  # key taps "FRAME:KEY …" posted as events, for tests and demos


def _check(args: argparse.Namespace) -> None:
    from envs.play.recording import VIDEO_SUFFIXES

    for name in ("episodes", "max_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise LabError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise LabError(f"--fps must be a positive number, got {args.fps:g}")
    if not 0 <= args.epsilon <= 1:
        raise LabError(f"--epsilon must be in [0, 1], got {args.epsilon:g}")
    if args.seed is not None and args.seed < 0:
        raise LabError(f"--seed must be 0 or more, got {args.seed}")
    if args.record is not None:
        if args.human:
            raise LabError("--record plays the agent without a window, so nobody can play: drop --human")
        args.record = output_file(args.record, "--record", VIDEO_SUFFIXES)  # before the episodes are played


def run(args: argparse.Namespace) -> int:
    _check(args)
    if args.record is not None:
        os.environ["SDL_VIDEODRIVER"] = "dummy"  # a recording draws off screen: no display needed
    import gymnasium as gym

    from envs.factory import make_env
    from envs.play.overlay import Overlay
    from envs.play.player import Player, QAgent
    from envs.play.recording import record_frames, write_video
    from envs.play.window import run_window

    task, agent, target = None, None, args.target
    if Path(target).is_dir():
        from agents.evaluation import EVAL_SEED_OFFSET
        from lab.runs import load_trained_task

        run_dir = Path(target)
        task, config, checkpoint = load_trained_task(run_dir, args.checkpoint, args.device)
        if not hasattr(config, "env"):
            task.close()
            raise LabError(f"'{run_dir}' is a {config.task} run; lab play needs an agent run (e.g. task: dqn)")
        env_id, kwargs = config.env.id, config.env.kwargs
        if is_atari(env_id):
            task.close()
            raise LabError(f"'{run_dir}' is an Atari agent: it sees ale-py's preprocessed vector-env frames, which "
                           f"the play window cannot show yet; score it with `lab eval {run_dir}`, or play "
                           f"{env_id} yourself with --human")
        agent = QAgent(task.model, task.device)
        seed = config.seed + EVAL_SEED_OFFSET if args.seed is None else args.seed  # the episodes lab eval plays
        subtitle = f"{run_dir.name}   {checkpoint.name}"
    else:
        if is_atari(target):
            from envs.factory import check_env_id

            check_env_id(target)  # registers the Atari envs
        if target not in gym.registry:
            raise LabError(f"'{target}' is neither a run dir nor a registered environment"
                           f"{did_you_mean(target, gym.registry)}")
        if not args.human:
            raise LabError(f"'{target}' is an environment, not a run dir: add --human to play it yourself, "
                           "or give a run made by lab train")
        env_id, kwargs, seed, subtitle = target, {}, args.seed, "you play"

    env = None
    try:
        env = make_env(env_id, render_mode="rgb_array", **kwargs)
        fps = args.fps or env.metadata.get("render_fps") or 30
        episodes = args.episodes or (1 if args.record is not None else None)
        player = Player(env, agent, episodes=episodes, epsilon=args.epsilon, seed=seed, max_steps=args.max_steps,
                        fps=fps, human=args.human)
        overlay = Overlay(player, env_id, subtitle)
        if args.record is not None:
            count = write_video(args.record, record_frames(overlay), fps)
            print(f"wrote {args.record} ({count} frames at {fps:g} fps)")
        else:
            stem = "play-" + env_id.replace("/", "-")
            run_window(overlay, f"lab play: {env_id} ({subtitle})", stem, args.screenshot_dir, args.script)
    finally:
        if env is not None:
            env.close()
        if task is not None:
            task.close()
    for k, (ret, length) in enumerate(zip(player.returns, player.lengths), start=1):
        print(f"episode {k}: return {ret:.2f} in {length} steps")
    return 0


COMMAND = register_command(Command(
    name="play", help="watch an agent play (Q-values, pause, step, take over), play yourself, or record a video",
    description=DESCRIPTION, add_arguments=add_arguments, run=run))
