"""build_from_layers: the YAML-friendly layer-list format, and its errors."""
from __future__ import annotations

import pytest
import torch
import yaml

import vision
from lab.errors import LabError

CNN_YAML = """
- conv: {out: 8, kernel: 3, padding: same}
- batchnorm: {}
- activation: relu
- pool: {kind: max, kernel: 2}
- conv: {out: 16, kernel: 3, stride: 1, padding: 1}
- activation: {name: maxout, pieces: 2}
- pool: {kind: avg, kernel: 2}
- flatten: {}
- dropout: 0.25
- dense: 32
- activation: gelu
"""


def test_a_yaml_layer_list_builds_a_backbone() -> None:
    model = vision.build_from_layers(yaml.safe_load(CNN_YAML), in_chans=1, num_classes=10, input_size=16).eval()
    x = torch.rand(3, 1, 16, 16)
    features = model.forward_features(x)
    assert features.shape == (3, 8, 4, 4)  # maxout halves the 16 conv channels
    assert model.num_features == 8 and model.features_dim == 32
    assert model(x).shape == (3, 10)
    assert torch.equal(model.forward_head(features), model(x))
    assert [info["stride"] for info in model.feature_info] == [1, 2, 4]
    assert model.head.pre_logits[2].in_features == 8 * 4 * 4
    model.reset_classifier(0)
    assert model(x).shape == (3, 32)


def test_a_list_ending_on_a_map_is_pooled_for_the_classifier() -> None:
    model = vision.build_from_layers([{"conv": {"out": 6, "kernel": 3}}], in_chans=3, num_classes=4, input_size=10)
    assert model(torch.rand(2, 3, 10, 10)).shape == (2, 4)
    assert model.features_dim == 6


def test_an_mlp_on_pixels_starts_flat() -> None:
    layers = [{"flatten": None}, {"fc": {"out": 20, "bias": False}}, {"activation": "tanh"}]
    model = vision.build_from_layers(layers, in_chans=1, num_classes=3, input_size=(4, 5))
    assert model(torch.rand(2, 1, 4, 5)).shape == (2, 3)
    assert model.head.pre_logits[1].bias is None and model.head.pre_logits[1].in_features == 20


def test_global_pool_and_grouped_conv() -> None:
    layers = [{"conv": {"out": 8, "kernel": 3, "groups": 2}}, {"global_pool": "max"}]
    model = vision.build_from_layers(layers, in_chans=4, num_classes=0, input_size=8)
    assert model(torch.rand(2, 4, 8, 8)).shape == (2, 8)


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([{"conv": {"out": 8}}], r"layer 0 \(conv\): missing key 'kernel'"),
        ([{"conv": {"out": 8, "kernal": 3}}], r"layer 0 \(conv\): unknown key 'kernal' \(did you mean 'kernel'"),
        ([{"conv": {"out": 8, "kernel": 3}}, {"fc": 10}], r"layer 1 \(fc\): needs a flat input .* put `flatten"),
        ([{"flatten": {}}, {"conv": {"out": 8, "kernel": 3}}], r"layer 1 \(conv\): needs a C×H×W map"),
        ([{"pool": {"kind": "max", "kernel": 2}}, {"convolution": {}}], r"layer 1: unknown kind 'convolution'"),
        ([{"pool": {"kind": "min"}}], r"layer 0 \(pool\): kind must be 'max' or 'avg'"),
        ([{"pool": {"kernel": 9}}], r"layer 0 \(pool\): kernel 9 does not fit its 8×8 input"),
        ([{"dropout": 1.5}], r"layer 0 \(dropout\): expected a drop probability"),
        ([{"activation": "rleu"}], r"layer 0 \(activation\): unknown activation 'rleu' \(did you mean 'relu'"),
        ([{"activation": {"name": "maxout", "pieces": 2}}], r"layer 0 \(activation\): maxout pieces .* 3 channels"),
        ([{"conv": {"out": True, "kernel": 3}}], r"layer 0 \(conv\): out must be an integer"),
        ([{"conv": {"out": 4, "kernel": 2, "padding": "same"}}], r"layer 0 \(conv\): padding 'same' needs"),
        ([{"flatten": {}, "fc": 3}], r"layer 0: expected one key"),
        ([], r"non-empty list"),
    ],
)
def test_bad_layer_specs_name_the_layer_and_key(layers: list, message: str) -> None:
    with pytest.raises(LabError, match=message):
        vision.build_from_layers(layers, in_chans=3, num_classes=2, input_size=8)


def test_backbone_from_config_takes_a_name_or_a_layer_list() -> None:
    named = vision.backbone_from_config({"name": "lenet5", "num_classes": 3})
    assert named(torch.rand(1, 1, 32, 32)).shape == (1, 3)
    section = {"name": "tiny", "layers": [{"flatten": {}}, {"fc": 4}], "in_chans": 1, "input_size": 2}
    listed = vision.backbone_from_config(section)
    assert listed(torch.rand(1, 1, 2, 2)).shape == (1, 4)  # num_classes 0 by default: the 4 pre-logit features
    with pytest.raises(LabError, match="no option 'stem'"):
        vision.backbone_from_config({"layers": [{"fc": 4}], "stem": "cifar"})
    with pytest.raises(LabError, match="needs `name:`"):
        vision.backbone_from_config({"num_classes": 3})
