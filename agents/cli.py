"""`lab qtable RUN_DIR`: print and plot a tabular agent's learned Q-table and greedy policy."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lab.commands import Command, register_command
from lab.errors import LabError
from lab.outputs import figure_suffixes, output_file, save_figure

# Arrow per action for the grid worlds whose layout we know: the env class name → arrows by action index.
GRID_ARROWS = {"FrozenLakeEnv": "←↓→↑", "CliffWalkingEnv": "↑→↓←"}


def grid_shape(env: object) -> tuple[int, int] | None:
    unwrapped = env.unwrapped
    if hasattr(unwrapped, "desc"):
        return tuple(unwrapped.desc.shape)
    if type(unwrapped).__name__ == "CliffWalkingEnv":
        return tuple(unwrapped.shape)
    return None


def learned(table: np.ndarray) -> np.ndarray:
    """Per state, whether anything is learned there: not all its actions' values still equal."""
    return ~np.all(table == table[:, :1], axis=1)


def policy_grid(table: np.ndarray, shape: tuple[int, int], arrows: str) -> list[str]:
    greedy = table.argmax(axis=1).reshape(shape)
    unvisited = ~learned(table).reshape(shape)
    return ["".join("·" if unvisited[r, c] else arrows[greedy[r, c]] for c in range(shape[1]))
            for r in range(shape[0])]


def plot_qtable(table: np.ndarray, shape: tuple[int, int] | None, arrows: str | None, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if shape else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 5), squeeze=False)
    ax = axes[0, 0]
    image = ax.imshow(table, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("action")
    ax.set_ylabel("state")
    ax.set_title("Q(s, a)")
    fig.colorbar(image, ax=ax)
    if shape:
        ax = axes[0, 1]
        values = np.where(learned(table).reshape(shape), table.max(axis=1).reshape(shape), np.nan)  # blank: unlearned
        image = ax.imshow(values, cmap="viridis")
        fig.colorbar(image, ax=ax)
        for (r, c), arrow in np.ndenumerate(np.array([list(row) for row in policy_grid(table, shape, arrows)])):
            ax.text(c, r, arrow, ha="center", va="center", color="white", fontsize=14)
        ax.set_title("max_a Q(s, a) and the greedy policy")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, out, "--plot")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--checkpoint", default="best", help="best (default), latest or a step_… directory name")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="also draw the table and policy to this PNG")
    parser.add_argument("--rows", type=int, default=16, help="table rows to print (default 16)")
    parser.add_argument("--json", action="store_true",
                        help="print {q_table, greedy_policy, png} as JSON (greedy_policy: null where nothing is "
                             "learned yet; png: null without --plot)")


def run(args: argparse.Namespace) -> int:
    from agents.tabular import TabularQ
    from lab.runs import load_trained_task

    if args.rows < 0:
        raise LabError(f"--rows must be 0 or more, got {args.rows}")
    plot = output_file(args.plot, "--plot", figure_suffixes(), default_suffix=".png") if args.plot else None
    task, config, _ = load_trained_task(args.run_dir, args.checkpoint, "cpu")
    if not isinstance(task, TabularQ):
        raise LabError(f"'{args.run_dir}' is a '{config.task}' run; lab qtable shows tabular (qlearning) runs")
    table = task.model.table.detach().numpy()
    env = task.runner.envs.envs[0]
    shape = grid_shape(env)
    arrows = GRID_ARROWS.get(type(env.unwrapped).__name__)
    task.close()
    png = plot_qtable(table, shape, arrows, plot) if plot else None
    if args.json:
        policy = [int(action) if known else None for action, known in zip(table.argmax(axis=1), learned(table))]
        print(json.dumps({"q_table": table.tolist(), "greedy_policy": policy, "png": png and str(png)}))
        return 0
    if shape and arrows:
        print(f"greedy policy of {config.env.id} (· = not learned yet):")
        print("\n".join("  " + row for row in policy_grid(table, shape, arrows)))
    from rich.console import Console
    from rich.table import Table

    view = Table(title=f"Q-table ({table.shape[0]} states × {table.shape[1]} actions)")
    view.add_column("state", justify="right")
    for action in range(table.shape[1]):
        view.add_column(f"a={action}", justify="right")
    view.add_column("greedy", justify="right")
    for state in range(min(args.rows, table.shape[0])):
        view.add_row(str(state), *(f"{v:.3f}" for v in table[state]), str(int(table[state].argmax())))
    Console().print(view)
    if png:
        print(png)
    return 0


register_command(Command(
    name="qtable",
    help="print and plot a tabular agent's Q-table and greedy policy",
    description="Show the Q-table a qlearning run learned, its greedy policy (as arrows for grid worlds), and "
                "optionally a heatmap PNG.\n\nexample:\n  lab qtable runs/frozenlake-20261122-101500 --plot q.png",
    add_arguments=add_arguments,
    run=run,
))
