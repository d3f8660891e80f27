"""User-facing errors: one clear line, exit code 2, no traceback."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class LabError(Exception):
    """Bad input from the user (config, CLI, files). The CLI prints the message alone and exits with code 2."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean 'x' or 'y'?)' for the nearest valid choices, or a short list of valid ones."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if close:
        return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
    if not choices:
        return ""
    shown = ", ".join(choices[:8]) + (", …" if len(choices) > 8 else "")
    return f" (valid: {shown})"


def not_utf8(where: str) -> LabError:
    """The error for input that is not UTF-8 text, with the usual way to convert it."""
    return LabError(f"{where} is not UTF-8 text; convert it first (e.g. iconv -f latin1 -t utf-8)")


def require_utf8(text: str, where: str) -> str:
    """`text` back if it is valid Unicode. Bytes that were not UTF-8 (in argv, or read with surrogateescape)
    reach Python as stand-in characters that a tokenizer would choke on."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise not_utf8(where) from None
    return text
