"""Smoke test of bench/backbone_throughput.py at a tiny CPU budget (the real numbers come from a GPU run)."""
from __future__ import annotations

import json

import pytest


def load_bench():  # noqa: ANN201
    from bench import backbone_throughput

    return backbone_throughput


def test_cpu_run_reports_images_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench()
    argv = ["--device", "cpu", "--no-compile", "--batch", "2", "--steps", "1", "--warmup", "1", "--image-size", "16"]
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


def test_bad_arguments_exit_with_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        load_bench().parse_args(["--steps", "0", "--device", "cpu"])
