"""Smoke test of bench/backbone_throughput.py at a tiny CPU budget (the real numbers come from a GPU run)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "backbone_throughput.py"


def load_bench():  # noqa: ANN201 - the script is not a package module
    spec = importlib.util.spec_from_file_location("backbone_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
