"""Files a command writes on request (plots, heatmaps, videos). Their paths are checked before the work that
fills them, so a typo costs one line of error, not the minutes a recording took."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.errors import LabError

IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


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
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):  # appending creates or keeps the file, never truncates it
            pass
    except OSError as error:
        raise LabError(f"{option} {path}: cannot write there ({error.strerror or error})") from None
    if not existed:
        path.unlink()
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
