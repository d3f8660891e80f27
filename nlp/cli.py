"""`lab translate RUN_DIR ["TEXT"] [--beam N] [--json] [--attention OUT.png]`: translate with a trained run."""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from lab import checkpoint as ckpt
from lab.commands import Command, register_command
from lab.devices import resolve_device
from lab.errors import LabError, not_utf8, require_utf8
from lab.outputs import figure_suffixes, output_file, save_figure
from lab.runs import open_run
from nlp.tokenization import TranslationTokenizers
from nlp.translation import TranslationConfig, build_translation_model
from nlp.translator import Translation, Translator


def load_translator(run_dir: Path, checkpoint: str = "best", device: str | None = None,
                    beam: int | None = None) -> Translator:
    """A run's model (from its checkpoint) with its tokenizer and decoding settings; reads no training data."""
    config, _ = open_run(run_dir)
    if not isinstance(config, TranslationConfig):
        raise LabError(f"'{run_dir}' is a {config.task!r} run, not a translation run")
    tokenizers = TranslationTokenizers.load(run_dir)
    model = build_translation_model(config.model, tokenizers)
    path = ckpt.find_checkpoint(run_dir, checkpoint)
    ckpt.load_model_weights(model, load_file(str(path / ckpt.MODEL_FILE)), path)
    target_device = resolve_device(device or config.device)
    decoding = config.decoding if beam is None else config.decoding.model_copy(update={"beam_size": beam})
    return Translator(model.to(target_device).eval(), tokenizers, target_device, decoding, config.data.max_tokens)


def notes(translation: Translation, limit: int) -> list[str]:
    """One-line remarks on odd input, for stderr."""
    found = []
    if translation.truncated:
        found.append(f"note: the input was cut to its first {limit} tokens (the model's limit)")
    pieces = sum(1 for token in translation.source_tokens[:-1] if token != "▁")  # without <eos> and bare spaces
    if translation.unknown_tokens and translation.unknown_tokens >= pieces:
        found.append("note: no part of the input is in the model's vocabulary (another script?); "
                     "the translation is a guess")
    elif translation.unknown_tokens:
        found.append(f"note: {translation.unknown_tokens} of {pieces} input pieces are unknown to the model")
    if translation.source and not translation.text.strip():
        found.append("note: the translation is empty (the model ended it at once; decoding.min_length: 1 forbids it)")
    return found


def as_json(translation: Translation, limit: int) -> dict[str, Any]:
    return {"source": translation.source, "translation": translation.text, "score": round(translation.score, 4),
            "source_tokens": translation.source_tokens, "target_tokens": translation.target_tokens,
            "truncated": translation.truncated, "unknown_tokens": translation.unknown_tokens,
            "notes": [note.removeprefix("note: ") for note in notes(translation, limit)]}


def plot_attention(translation: Translation, path: Path) -> Path:
    """Heatmap of the attention over source tokens (columns) for each output token (rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = translation.attention.float().numpy()
    rows, columns = weights.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * columns + 1.5), max(3.0, 0.4 * rows + 1.5)))
    ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(columns), translation.source_tokens, rotation=90)
    ax.set_yticks(range(rows), translation.target_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    ax.set_title(translation.text if len(translation.text) <= 60 else translation.text[:57] + "…", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, "--attention")


def _report(translation: Translation, translator: Translator, json_output: bool) -> None:
    for line in notes(translation, translator.max_source_tokens):
        print(line, file=sys.stderr)
    if json_output:
        print(json.dumps(as_json(translation, translator.max_source_tokens), ensure_ascii=False), flush=True)
    else:
        print(translation.text, flush=True)


def _stdin_batches() -> Iterator[list[str]]:
    """Piped input as batches of the lines that have arrived: a file comes in large batches (which `translate`
    sorts by length), while a producer that writes a line and waits for its translation gets it at once. Each
    line is checked for UTF-8, so an error can name it."""
    number = 0

    def decoded(raw: bytes) -> str:
        nonlocal number
        number += 1
        try:
            return raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise not_utf8(f"line {number} of the input") from None

    for lines in _arriving_lines(sys.stdin.buffer):
        yield [decoded(raw) for raw in lines]


def _arriving_lines(stream: Any) -> Iterator[list[bytes]]:
    """The complete lines each read of the stream brings (the last one may lack its newline at the end)."""
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):  # an in-memory stream: all of it is there
        yield stream.read().splitlines()
        return
    partial: list[bytes] = []  # the pieces of a line still arriving (kept apart: a long line is not re-joined)
    while chunk := os.read(descriptor, 1 << 16):  # blocks until some input arrives, b"" at its end
        if b"\n" not in chunk:
            partial.append(chunk)
            continue
        *lines, rest = (b"".join(partial) + chunk).split(b"\n")
        partial = [rest] if rest else []
        yield lines
    if partial:
        yield [b"".join(partial)]


def run(args: argparse.Namespace) -> int:
    if args.beam is not None and args.beam < 1:
        raise LabError(f"--beam must be at least 1, got {args.beam}")
    if args.attention is not None and args.text is None:
        raise LabError("--attention draws one sentence: give the TEXT argument too")
    if args.text is not None and not require_utf8(args.text, "the text").strip():
        raise LabError("nothing to translate: the text is empty")
    attention = (output_file(args.attention, "--attention", figure_suffixes(), default_suffix=".png")
                 if args.attention is not None else None)
    translator = load_translator(args.run_dir, args.checkpoint, args.device, args.beam)

    if args.text is not None:
        translation = translator.translate([args.text], return_attention=attention is not None)[0]
        _report(translation, translator, args.json)
        if attention is not None:
            if translation.attention is None:
                raise LabError("this model has no attention to draw (it is an encoder–decoder without attention)")
            print(f"attention: {plot_attention(translation, attention)}", file=sys.stderr)
        return 0

    if not sys.stdin.isatty():
        # Piped input: translated in batches, one output line per input line (a blank line gives a blank one,
        # so the output lines up with the input).
        for batch in _stdin_batches():
            for translation in translator.translate(batch):
                _report(translation, translator, args.json)
        return 0
    print("type a sentence and press Enter; Ctrl-D ends", file=sys.stderr)
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        if require_utf8(line, "the line").strip():
            _report(translator.translate([line])[0], translator, args.json)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run trained with a translation config")
    parser.add_argument("text", nargs="?", metavar="TEXT", help="the sentence to translate; without it, "
                        "each line read from standard input is translated until end of input")
    parser.add_argument("--beam", type=int, metavar="N", help="beam size (default: the run's decoding.beam_size; 1 = greedy)")
    parser.add_argument("--checkpoint", default="best", help="best (default), latest or a step_… directory name")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="override the run's device")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object per sentence (translation, tokens, score, notes)")
    parser.add_argument("--attention", type=Path, metavar="OUT.png",
                        help="draw the attention heatmap of TEXT (png, pdf, svg or jpg; no suffix: png)")


TRANSLATE = register_command(
    Command(
        name="translate",
        help="translate sentences with a trained translation run",
        description=(
            "Translates TEXT, or every line of standard input (an interactive prompt in a terminal; piped input "
            "gives one output line per input line), with a run's best checkpoint, its tokenizer and its decoding "
            "settings. Unknown words, cut-off input and input in another script are noted on stderr (and under "
            "\"notes\" with --json).\n\n"
            "example:\n  lab translate runs/translate_transformer \"Guten Morgen.\" --beam 5 --attention att.png"
        ),
        add_arguments=add_arguments,
        run=run,
    )
)
