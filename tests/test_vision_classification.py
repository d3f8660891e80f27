"""The image-classification task's model and data checks: every mistake is a one-line error before training,
and `lab summary CONFIG` shows the very model a run of that config trains."""
import json
from pathlib import Path

import pytest
from PIL import Image

from lab.cli import main
from lab.config import load_config
from lab.errors import LabError
from lab.trainer import Trainer
from vision.builder import build_from_layers


def build(overrides: list[str], tiny_digits: list[str]) -> Trainer:
    return Trainer(load_config("vision/digits", tiny_digits + overrides), None)


@pytest.mark.parametrize("overrides, message", [
    (["model.name=alexnet"], r"alexnet cannot take 1×32×32 images \(.*\): raise data.image_size"),
    (["model.name=unet"], "unet outputs 10×32×32 per image, not one score per class"),
    (["model.options={num_classes: 7}"], "model.options.num_classes is set by the data .*10 classes"),
    (["data.batch_size=2000"], r"the training split's \d+ samples make no full batch of data.batch_size=2000"),
    (["data.valid_fraction=0.001"], r"too few to split off data.valid_fraction=0.001"),
])
def test_bad_model_or_data_is_a_clear_error(overrides: list[str], message: str, tiny_digits: list[str]) -> None:
    with pytest.raises(LabError, match=message):
        build(overrides, tiny_digits)


def test_a_folder_too_small_for_a_stratified_split(tmp_path: Path, tiny_digits: list[str]) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / name / f"{i}.png")
    with pytest.raises(LabError, match="9 images in 3 classes are too few to split off data.test_fraction"):
        build(["data.source=folder", f"data.path={tmp_path}"], tiny_digits)


def test_layer_lists_take_their_options_and_channels_convert(tiny_digits: list[str]) -> None:
    trainer = build(["model.name=null", "model.layers=[{conv: {out: 4, kernel: 3}}]",
                     "model.options={global_pool: max}", "data.channels=3"], tiny_digits)
    model = trainer.task.model
    assert type(model.head.pre_logits[0][0]).__name__ == "AdaptiveMaxPool2d"
    assert model.features[0].in_channels == 3 and trainer.task.images["train"].shape[1] == 3


def test_layer_list_stages_multiply_their_strides() -> None:
    lenet = [{"conv": {"out": 6, "kernel": 5}}, {"activation": "tanh"}, {"pool": {"kind": "avg", "kernel": 2}},
             {"conv": {"out": 16, "kernel": 5}}, {"activation": "tanh"}, {"pool": {"kind": "avg", "kernel": 2}},
             {"conv": {"out": 120, "kernel": 5}}, {"activation": "tanh"}, {"flatten": {}}, {"fc": 84}]
    info = build_from_layers(lenet, in_chans=1, num_classes=10, input_size=32).feature_info
    assert [(i["module"], i["channels"], i["stride"]) for i in info] == [
        ("features.1", 6, 1), ("features.4", 16, 2), ("features.7", 120, 4)]
    strided = [{"dropout": 0.1}, {"conv": {"out": 4, "kernel": 3, "stride": 2}}, {"conv": {"out": 8, "kernel": 3}}]
    info = build_from_layers(strided, in_chans=1, input_size=16).feature_info
    assert [(i["module"], i["stride"]) for i in info] == [("features.0", 1), ("features.2", 2)]
    with pytest.raises(LabError, match=r"layer 1 \(batchnorm\): eps must be a positive number, got 'x'"):
        build_from_layers([{"conv": {"out": 4, "kernel": 3}}, {"batchnorm": {"eps": "x"}}])


@pytest.mark.parametrize("config, overrides", [
    ("vision/digits", []),
    ("vision/digits", ["model.name=null", "model.layers=[{conv: {out: 4, kernel: 3}}, {flatten: {}}, {fc: 16}]",
                       "data.image_size=16", "model.options={global_pool: max}"]),
    ("vision/digits_finetune", []),
])
def test_summary_of_a_training_config_is_the_model_it_trains(config: str, overrides: list[str], tmp_path: Path,
                                                               tiny_digits: list[str], capsys) -> None:
    import yaml

    resolved = tmp_path / "config.yaml"
    assert main(["config", config, *overrides, "model.init_from=null"]) == 0
    resolved.write_text(capsys.readouterr().out)
    assert main(["summary", str(resolved), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    trainer = Trainer(load_config(resolved, tiny_digits), None)
    params = sum(p.numel() for p in trainer.task.model.parameters())
    assert summary["total"]["params"] == params
    assert summary["input"] == list(trainer.task.images["train"].shape[1:])
    assert yaml.safe_load(resolved.read_text())["task"] == "image_classification"


def test_summary_takes_a_config_name_and_refuses_other_tasks(capsys) -> None:
    assert main(["summary", "vision/cifar10", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["input"] == [3, 32, 32] and summary["layers"][-1]["output_shape"] == [10]
    assert main(["summary", "dqn/pong"]) == 2
    assert "trains a dqn task; lab summary reads image-classification configs" in capsys.readouterr().err


def test_piped_summary_keeps_layer_names_whole() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "lab", "summary", "resnet18_cifar"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert "layer2.0.downsample.0" in out and "layer1.0.conv1" in out and "…" not in out


def test_too_small_a_summary_input_says_what_to_change(capsys) -> None:
    assert main(["summary", "alexnet", "--input", "3x32x32"]) == 2
    assert "give a larger --input" in capsys.readouterr().err
