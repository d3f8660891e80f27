"""Smoke test of bench/translation.py's throughput and profile parts at tiny CPU shapes (the real numbers come
from a GPU run)."""
from __future__ import annotations

import json

import pytest

TINY = ["--device", "cpu", "--d-model", "32", "--layers", "2", "--heads", "4", "--ffn", "64", "--vocab", "300",
        "--batch-size", "4", "--source-length", "8", "--target-length", "8", "--decode-batch", "2",
        "--decode-length", "6", "--measure-seconds", "0.2"]


def load_bench():  # noqa: ANN201
    from bench import translation

    return translation


def test_throughput_and_profile_of_both_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_bench().main([*TINY, "--skip-bleu", "--profile", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["training"]["ratio"] > 0 and report["beam_search"]["ratio"] > 0
    assert report["training"]["lab_parameters"] > 0
    for model in ("lab", "marian"):
        profiled = report["beam_profile"][model]
        assert profiled["operators_per_step"] > 20 and profiled["operator_ms_per_step"] > 0
        top = profiled["top"]
        assert 0 < len(top) <= 8 and all(op["name"].startswith("aten::") and op["calls_per_step"] > 0 for op in top)
        times = [op["ms_per_step"] for op in top]
        assert times == sorted(times, reverse=True)  # the costliest operators first


def test_a_cuda_profile_counts_kernels_per_step_and_reports_copies_apart() -> None:
    events = [("ampere_bf16_gemm", 8, 400.0), ("vectorized_elementwise", 16, 160.0), ("ampere_bf16_gemm", 4, 200.0),
              ("Memcpy HtoD (Pageable -> Device)", 2, 30.0), ("Memset (Device)", 2, 10.0)]
    summary = load_bench().summarize_profile(events, steps=4, wall_s=0.02, on_cuda=True, top=1)
    assert summary["kernels_per_step"] == 7  # 28 kernels over 4 steps; the copies and memsets apart
    assert summary["gpu_busy_ms_per_step"] == pytest.approx(0.19)
    assert summary["wall_ms_per_step"] == pytest.approx(5.0)
    assert summary["copies_and_memsets_per_step"] == 1 and summary["copy_ms_per_step"] == pytest.approx(0.01)
    assert summary["top"] == [{"name": "ampere_bf16_gemm", "calls_per_step": 3.0, "ms_per_step": 0.15}]


def test_a_cpu_run_defaults_to_a_tiny_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_bench().main(["--device", "cpu", "--skip-bleu", "--skip-throughput", "--json"]) == 0
    shape = json.loads(capsys.readouterr().out)["shape"]
    assert (shape["d_model"], shape["layers"], shape["vocab"], shape["decode_batch"]) == (64, 2, 2000, 8)


def test_bleu_reads_the_ding_file_it_is_given(tmp_path) -> None:
    from lab.errors import LabError

    missing = tmp_path / "ding-de-en"
    with pytest.raises(LabError, match=str(missing)):  # the path reaches the run's data.ding_path
        load_bench().main(["--device", "cpu", "--skip-throughput", "--models", "seq2seq_gru_bahdanau",
                           "--budget-seconds", "1", "--ding-path", str(missing)])
