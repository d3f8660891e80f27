"""Text classification benchmark: every classifier of the lab against TF-IDF + logistic regression.

All models see the same fixed split of the default data (the fortunes topics, or whatever the configs'
`data:` section says). Each neural model trains with its own config (configs/nlp/classify_*.yaml) under the
lab's Trainer until its `trainer.max_steps` or `--budget-seconds` of wall-clock time, whichever comes first,
and is scored once on the test split with its final weights. The baseline is scikit-learn's TfidfVectorizer
(word 1–2-grams, sublinear tf) and LogisticRegression with balanced class weights, its C picked on the
validation split. Target: the best neural model beats the baseline's test macro-F1.

    python bench/classification.py --budget-seconds 90 --json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from anywhere

import nlp.text_classification  # noqa: E402,F401  (registers the task)
from lab.config import load_config  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.trainer import Trainer, time_limit  # noqa: E402
from nlp.text_classification import classification_scores  # noqa: E402
from nlp.text_data import load_text_splits  # noqa: E402

# name → (config, overrides); text_gru is the LSTM config with the other cell.
MODELS: dict[str, tuple[str, list[str]]] = {
    "text_lstm": ("nlp/classify_lstm", []),
    "text_gru": ("nlp/classify_lstm", ["model.name=text_gru"]),
    "text_cnn": ("nlp/classify_cnn", []),
    "text_transformer": ("nlp/classify_transformer", []),
    "hf_encoder (all-MiniLM-L6-v2)": ("nlp/classify_minilm", []),
}


def tfidf_baseline(config_name: str) -> dict[str, Any]:
    """TF-IDF + logistic regression on the split the lab's models use; C chosen by validation macro-F1."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    splits = load_text_splits(load_config(config_name).data)
    texts = {name: [text for text, _ in getattr(splits, name)] for name in ("train", "valid", "test")}
    labels = {name: splits.label_ids(getattr(splits, name)).numpy() for name in texts}
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    features = {"train": vectorizer.fit_transform(texts["train"])}
    features.update({name: vectorizer.transform(texts[name]) for name in ("valid", "test")})
    classes = len(splits.class_names)

    def fit(c: float) -> tuple[Any, float, float]:
        start = time.perf_counter()
        model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(features["train"], labels["train"])
        valid_f1 = classification_scores(labels["valid"], model.predict(features["valid"]), classes)["macro_f1"]
        return model, valid_f1, time.perf_counter() - start

    fits = {c: fit(c) for c in (1.0, 3.0, 10.0)}
    best_c = max(fits, key=lambda c: fits[c][1])
    model, valid_f1, fit_seconds = fits[best_c]
    scores = classification_scores(labels["test"], model.predict(features["test"]), classes)
    return {"test_accuracy": scores["accuracy"], "test_macro_f1": scores["macro_f1"], "valid_macro_f1": valid_f1,
            "C": best_c, "seconds": round(fit_seconds, 1), "search_seconds": round(time.perf_counter() - started, 1),
            "sizes": {name: len(texts[name]) for name in texts}, "classes": splits.class_names}


def train_and_score(config_name: str, overrides: list[str], seconds: float) -> dict[str, Any]:
    config = load_config(config_name, overrides)
    trainer = Trainer(config, run_dir=None)  # data, tokenizer and model are built before the clock starts
    trainer.callbacks.append(time_limit(seconds, f"wall-clock budget of {seconds:g} s used"))
    started = time.perf_counter()
    result = trainer.fit()
    evaluation = result["eval"]
    return {"test_accuracy": evaluation["eval/test_accuracy"], "test_macro_f1": evaluation["eval/test_macro_f1"],
            "valid_macro_f1": evaluation["eval/valid_macro_f1"], "steps": result["step"],
            "max_steps": config.trainer.max_steps, "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON dict with every figure")
    parser.add_argument("--budget-seconds", type=float, default=120.0, help="training time limit per model")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), metavar="NAME",
                        help=f"models to train (default: all of {', '.join(MODELS)})")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: each config's trainer.cpu_threads)")
    args = parser.parse_args(argv)

    common = [f"device={args.device}", "trainer.eval_every=null", "trainer.checkpoint_every=null",
              "trainer.progress=false", "tracking.mode=disabled"]
    if args.threads:
        common.append(f"trainer.cpu_threads={args.threads}")
    print("baseline: TF-IDF + logistic regression …", file=sys.stderr, flush=True)
    baseline = tfidf_baseline(MODELS[args.models[0]][0])
    report: dict[str, Any] = {"budget_seconds": args.budget_seconds, "device": args.device, "baseline": baseline,
                              "models": {}}
    for name in args.models:
        config_name, overrides = MODELS[name]
        print(f"training {name} (at most {args.budget_seconds:g} s) …", file=sys.stderr, flush=True)
        try:
            report["models"][name] = train_and_score(config_name, common + overrides, args.budget_seconds)
        except LabError as err:  # e.g. the MiniLM weights are not installed: report it, go on with the others
            print(f"skipped {name}: {err}", file=sys.stderr, flush=True)
            report["skipped"] = {**report.get("skipped", {}), name: str(err)}
    trained = report["models"]
    best = max(trained, key=lambda n: trained[n]["test_macro_f1"]) if trained else None
    report["best_model"] = best
    report["target_met"] = bool(best and trained[best]["test_macro_f1"] > baseline["test_macro_f1"])

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"data: {baseline['sizes']} texts, {len(baseline['classes'])} classes; device {args.device}")
    print("seconds: training and the final evaluation (neural); fitting the chosen C (baseline, grid search "
          f"{baseline['search_seconds']:g} s)")
    print(f"{'model':<32} {'test acc':>8} {'macro-F1':>8} {'steps':>11} {'seconds':>8}")
    rows = [("TF-IDF + logistic regression", baseline["test_accuracy"], baseline["test_macro_f1"],
             f"C={baseline['C']:g}", baseline["seconds"])]
    rows += [(n, r["test_accuracy"], r["test_macro_f1"], f"{r['steps']}/{r['max_steps']}", r["seconds"])
             for n, r in report["models"].items()]
    for name, accuracy, f1, steps, seconds in rows:
        print(f"{name:<32} {accuracy:>8.3f} {f1:>8.3f} {steps:>11} {seconds:>8.1f}")
    for name, reason in report.get("skipped", {}).items():
        print(f"{name:<32} skipped: {reason}")
    print(f"best neural model: {best}; beats the baseline's macro-F1: {'yes' if report['target_met'] else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
