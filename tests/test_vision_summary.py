"""vision.summary and the `lab summary` command: LeNet-5's numbers by hand, totals, JSON, errors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

import vision
from lab.commands import COMMANDS
from lab.errors import LabError
from vision.cli import run
from vision.summary import parse_input_shape, summarize


def lenet_rows() -> dict[str, dict]:
    summary = summarize(vision.create_backbone("lenet5"), (1, 32, 32))
    return {row["name"]: row for row in summary["layers"]} | {"total": summary["total"]}


def test_lenet5_layers_match_hand_computation() -> None:
    rows = lenet_rows()
    assert rows["input"]["neurons"] == 32 * 32 and rows["input"]["params"] == 0
    c1 = rows["c1.conv"]
    assert c1["output_shape"] == [6, 28, 28]
    assert c1["neurons"] == 6 * 28 * 28 == 4_704
    assert c1["connections"] == 4_704 * 25 == 117_600
    assert c1["params"] == 6 * 25 + 6
    assert rows["s2"]["neurons"] == 6 * 14 * 14 and rows["s2"]["connections"] == 6 * 14 * 14 * 4
    assert rows["c3.conv"]["connections"] == 16 * 10 * 10 * 5 * 5 * 6
    assert rows["c5.conv"]["params"] == 48_120
    assert rows["head.pre_logits.0"]["params"] == 10_164  # F6: 120·84 + 84
    assert rows["head.pre_logits.0"]["connections"] == 84 * 120
    assert rows["c1.act"]["neurons"] == rows["c1.act"]["connections"] == 0  # element-wise: no new units
    assert rows["total"]["params"] == 61_706


def test_totals_are_column_sums_and_params_cover_the_model() -> None:
    for name, shape in [("lenet5", (1, 32, 32)), ("resnet18_cifar", (3, 8, 8)), ("unet", (3, 8, 8))]:
        model = vision.create_backbone(name)
        summary = summarize(model, shape)
        for key in ("params", "neurons", "connections"):
            assert summary["total"][key] == sum(row[key] for row in summary["layers"])
        assert summary["total"]["params"] == sum(p.numel() for p in model.parameters())


def test_adaptive_pooling_and_transposed_conv_connections() -> None:
    model = torch.nn.Sequential(torch.nn.ConvTranspose2d(2, 3, 2, 2), torch.nn.AdaptiveAvgPool2d(1))
    rows = summarize(model, (2, 5, 5))["layers"]
    assert rows[1]["connections"] == 2 * 5 * 5 * 3 * 2 * 2  # every input unit feeds k·k·out outputs
    assert rows[2]["connections"] == 3 * 10 * 10  # global pooling reads the whole map per channel


def summary_args(model: str, input: str | None = None, as_json: bool = True) -> argparse.Namespace:
    return argparse.Namespace(model=model, input=input, json=as_json)


def test_summary_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert "summary" in COMMANDS
    assert run(summary_args("lenet5", "1x32x32")) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"layers", "total"}
    assert result["total"]["params"] == 61_706
    assert result["layers"][0]["name"] == "input"
    assert {"name", "type", "output_shape", "neurons", "connections", "params"} <= set(result["layers"][1])


def test_summary_command_prints_an_aligned_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(summary_args("lenet5", as_json=False)) == 0
    table = capsys.readouterr().out
    assert "61,706" in table and "117,600" in table and "c1.conv" in table


def test_summary_of_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cnn.yaml"
    config.write_text(
        "task: vision\nmodel:\n  name: tiny\n  in_chans: 1\n  input_size: 8\n  num_classes: 2\n"
        "  layers:\n    - conv: {out: 4, kernel: 3}\n    - activation: relu\n    - flatten: {}\n"
    )
    run(summary_args(str(config)))
    result = json.loads(capsys.readouterr().out)
    assert result["input"] == [1, 8, 8]
    assert result["total"]["params"] == (9 * 4 + 4) + (4 * 6 * 6 * 2 + 2)
    run(summary_args(str(config), "1x10x10"))  # --input resizes the model built from the config
    assert json.loads(capsys.readouterr().out)["total"]["params"] == (9 * 4 + 4) + (4 * 8 * 8 * 2 + 2)


def test_summary_of_a_config_takes_options_and_skips_training_switches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "resnet.yaml"
    config.write_text("model:\n  name: resnet18_cifar\n  bf16: true\n  options: {num_classes: 7, act: prelu}\n")
    run(summary_args(str(config), "3x8x8"))
    rows = json.loads(capsys.readouterr().out)["layers"]
    assert rows[-1]["output_shape"] == [7] and any(row["type"] == "PReLU" for row in rows)


def test_summary_errors_are_lab_errors(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="did you mean 'lenet5'"):
        run(summary_args("lenet"))
    with pytest.raises(LabError, match="C×H×W"):
        run(summary_args("lenet5", "32x32"))
    with pytest.raises(LabError, match="cannot take"):
        run(summary_args("lenet5", "1x16x16"))
    with pytest.raises(LabError, match="not found"):
        run(summary_args(str(tmp_path / "missing.yaml")))
    (tmp_path / "typo.yaml").write_text("task: image_clasification\nmodel: {name: lenet5}\n")
    with pytest.raises(LabError, match="did you mean 'image_classification'"):
        run(summary_args(str(tmp_path / "typo.yaml")))
    (tmp_path / "bad.yaml").write_text("trainer: {}\n")
    with pytest.raises(LabError, match="no `model:` section"):
        run(summary_args(str(tmp_path / "bad.yaml")))


@pytest.mark.parametrize("text", ["3x32x32", "3×32×32", "3,32,32", " 3 X 32 X 32 "])
def test_input_shapes_parse(text: str) -> None:
    assert parse_input_shape(text) == (3, 32, 32)


@pytest.mark.parametrize("text", ["", "3x32", "3x0x32", "axbxc", "3x32x32x1"])
def test_bad_input_shapes_are_rejected(text: str) -> None:
    with pytest.raises(LabError):
        parse_input_shape(text)
