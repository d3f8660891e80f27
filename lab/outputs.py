"""Files a command writes on request (plots, heatmaps, videos). Their paths are checked before the work that
fills them, so a typo costs one line of error, not the minutes a recording took."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from lab.errors import LabError


@functools.cache
def figure_suffixes() -> tuple[str, ...]:
    """What matplotlib can save a figure as (png, pdf, svg, eps, …), as file suffixes; png first."""
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = sorted(set(FigureCanvasBase.get_supported_filetypes()) - {"raw", "rgba"})  # raw pixels: no image file
    return (".png", *(f".{kind}" for kind in kinds if kind != "png"))


def output_file(path: Path, option: str, suffixes: tuple[str, ...], default_suffix: str | None = None) -> Path:
    """`path` made ready to write: without a suffix it takes `default_suffix`, its folder is made, and a file
    that cannot be written there is a LabError naming `option`. The path returned is the one to report."""
    if not path.suffix and default_suffix is not None and not path.is_dir():
        path = path.with_suffix(default_suffix)
    if path.is_dir():
        example = path / f"out{default_suffix or suffixes[0]}"
        raise LabError(f"{option} {path}: that is a folder; give a file name, e.g. {example}")
    if path.suffix.lower() not in suffixes:
        raise LabError(f"{option} {path}: the file must end in {', '.join(suffixes)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)  # fails on anything there, links included
    except FileExistsError:  # a file (or a link) the user has: check it can be written, never touch it
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise LabError(f"{option} {path}: cannot write there (the file is read-only)") from None
        return path
    except OSError as error:
        raise LabError(f"{option} {path}: cannot write there ({error.strerror or error})") from None
    os.close(probe)
    os.unlink(path)  # only the empty file this call made
    return path


def save_figure(fig: Any, path: Path, option: str) -> Path:
    """Write a matplotlib figure (to a path checked by `output_file`) and close it."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as error:  # the disk filled up, say, since the path was checked
        raise LabError(f"cannot write the figure to '{path}' ({getattr(error, 'strerror', None) or error}); "
                       f"choose another {option}") from None
    finally:
        plt.close(fig)
    return path
