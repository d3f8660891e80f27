"""Smoke test of bench/backbone_throughput.py at a tiny CPU budget (the real numbers come from a GPU run)."""
from __future__ import annotations

import json

import pytest
import torch


def load_bench():  # noqa: ANN201
    from bench import backbone_throughput

    return backbone_throughput


def test_cpu_run_reports_images_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench()
    argv = ["--device", "cpu", "--batch", "2", "--steps", "1", "--warmup", "1", "--image-size", "16"]
    argv.append("--json")
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    lab = report["results"]["eager"]["lab"]
    assert lab["images_per_s"] > 0 and lab["params"] == 11_689_512  # ResNet-18 with 1000 classes
    assert "compiled" not in report["results"]
    if report["timm"] is None:
        assert any("timm" in note for note in report["notes"])
    else:
        assert report["results"]["eager"]["ratio_lab_over_timm"] > 0


def test_models_take_turns_over_rounds_and_the_ratio_is_the_median_round(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load_bench()
    models = {"lab": lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 1000)),
              "timm": lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 1000, bias=False))}
    name_of_params = {3 * 8 * 8 * 1000 + 1000: "lab", 3 * 8 * 8 * 1000: "timm"}
    timed: list[str] = []

    def fake_clock(runner, steps: int) -> float:  # noqa: ANN001 - timm half as fast; the machine's speed drifts
        timed.append(name_of_params[runner.params])
        return {"lab": 1.0, "timm": 2.0}[timed[-1]] * (1 + len(timed) % 3)

    monkeypatch.setattr(bench.TrainingStep, "seconds_for", fake_clock)
    report = bench.measure(models, False, torch.device("cpu"), batch=2, image_size=8, warmup=1, steps=1, rounds=4)
    assert timed == ["lab", "timm", "timm", "lab", "lab", "timm", "timm", "lab"]  # turns flip every round
    # 2 images a window over 2·(1 + n mod 3) s (lab) or 4·(1 + n mod 3) s (timm), n counting windows from 1
    assert report["lab"]["rounds_images_per_s"] == pytest.approx([1.0, 1.0, 2 / 3, 2 / 3])
    assert report["timm"]["rounds_images_per_s"] == pytest.approx([1 / 3, 1.0, 1.0, 0.5])
    assert report["round_ratios"] == pytest.approx([3.0, 1.0, 2 / 3, 4 / 3])
    assert report["ratio_lab_over_timm"] == pytest.approx(7 / 6)  # the median round
    assert report["lab"]["images_per_s"] == pytest.approx(5 / 6)
    assert report["timm"]["warmup_s"] > 0


def test_bad_arguments_exit_with_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        load_bench().parse_args(["--steps", "0", "--device", "cpu"])
