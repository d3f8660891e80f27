"""`lab classify RUN_DIR ["TEXT"] [--file PATH] [--json]`: label texts with a trained text_classification run."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab.commands import Command, register_command
from lab.errors import LabError, not_utf8, require_utf8
from nlp.text_classification import Prediction, load_text_predictor


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of each non-blank line of a file, or of standard input for '-'."""
    try:  # as bytes, so that a BOM goes and text that is not UTF-8 is found whatever the locale
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as err:
        raise LabError(f"cannot read '{path}': {err.strerror}") from None
    except UnicodeDecodeError:
        raise not_utf8("standard input" if str(path) == "-" else f"'{path}'") from None
    return [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _print(prediction: Prediction, json_output: bool, line: int | None = None) -> None:
    if json_output:
        record = {"label": prediction.label, "probabilities": prediction.probabilities}
        if line is not None:  # file mode: say which input each output line answers
            record = {"line": line, "text": prediction.text, **record}
        print(json.dumps(record, ensure_ascii=False), flush=True)
    elif line is not None:
        print(f"{prediction.label}\t{prediction.probabilities[prediction.label]:.3f}\t{prediction.text}", flush=True)
    else:
        print(prediction.label)
        width = max(map(len, prediction.probabilities))
        for name, probability in prediction.probabilities.items():
            print(f"  {name:<{width}}  {probability:.3f}")


def run(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.file is None):
        raise LabError("give either TEXT or --file PATH (one text per line; '-' reads standard input)")
    if args.text is not None and not require_utf8(args.text, "the text").strip():
        raise LabError("nothing to classify: the text is empty")
    lines = _read_lines(args.file) if args.file is not None else [(0, args.text)]
    if not lines:
        raise LabError(f"nothing to classify: '{args.file}' has no non-blank line")
    predictor = load_text_predictor(args.run_dir, args.checkpoint, args.device)
    batch = 256  # bounded memory for long files
    for start in range(0, len(lines), batch):
        chunk = lines[start:start + batch]
        for (number, _), prediction in zip(chunk, predictor.classify([text for _, text in chunk])):
            _print(prediction, args.json, number if args.file is not None else None)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run trained with a text_classification config")
    parser.add_argument("text", nargs="?", metavar="TEXT", help="the text to classify")
    parser.add_argument("--file", type=Path, metavar="PATH", help="classify each non-blank line of PATH ('-': stdin)")
    parser.add_argument("--checkpoint", default="best", help="best (default), latest or a step_… directory name")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="override the run's device")
    parser.add_argument("--json", action="store_true",
                        help='print {"label": …, "probabilities": {…}} (one JSON line per text with --file)')


CLASSIFY = register_command(
    Command(
        name="classify",
        help="label texts with a trained text classification run",
        description=(
            "Prints the predicted label of TEXT and the probability of every class (most probable first), using "
            "the run's best checkpoint, its tokenizer and, for binary tasks, its model.threshold. With --file, "
            "each non-blank line is classified: 'label<TAB>probability<TAB>text' per line, or JSON lines with "
            "--json.\n\n"
            "example:\n  lab classify runs/classify_lstm \"The compiler ate my homework.\" --json\n"
            "  lab classify runs/classify_lstm --file quotes.txt --json"
        ),
        add_arguments=add_arguments,
        run=run,
    )
)
