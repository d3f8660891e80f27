"""The backbone interface, checked on every registered backbone at a small input."""
from __future__ import annotations

import pytest
import torch

import vision
from lab.errors import LabError
from lab.registry import MODELS

# Small inputs and options that keep every backbone quick on a CPU without changing its interface.
SMALL_INPUT = {
    "alexnet": (3, 64, 64),
    "googlenet": (3, 32, 32),
    "lenet5": (1, 32, 32),
    "mobilenet_v1": (3, 32, 32),
    "nature_cnn": (4, 84, 84),
    "impala_cnn": (4, 64, 64),
    "resnet18": (3, 32, 32),
    "resnet34": (3, 32, 32),
    "unet": (3, 12, 12),
    "vgg11": (3, 32, 32),
    "vgg16": (3, 32, 32),
}
SMALL_OPTIONS = {"alexnet": {"head_hidden": (64, 32)}, "vgg11": {"head_hidden": (64,)}, "vgg16": {"head_hidden": (64,)}}


def small_backbone(name: str, num_classes: int) -> tuple[torch.nn.Module, torch.Tensor]:
    channels, height, width = SMALL_INPUT.get(name, (3, 8, 8))
    model = vision.create_backbone(
        name, in_chans=channels, num_classes=num_classes, input_size=(height, width), **SMALL_OPTIONS.get(name, {})
    )
    return model, torch.rand(2, channels, height, width)


def test_every_backbone_is_listed_and_is_a_lab_model() -> None:
    names = vision.list_backbones()
    expected = {
        "lenet5", "alexnet", "vgg11", "vgg16", "resnet18", "resnet34", "resnet18_cifar", "resnet34_cifar",
        "googlenet", "googlenet_cifar", "mobilenet_v1", "mobilenet_v1_cifar", "unet", "nature_cnn", "impala_cnn",
    }  # fmt: skip
    assert expected <= set(names)
    assert all(name in MODELS for name in names)
    assert vision.list_backbones("resnet*") == ["resnet18", "resnet18_cifar", "resnet34", "resnet34_cifar"]


@pytest.mark.parametrize("name", vision.list_backbones())
@torch.no_grad()
def test_backbone_interface(name: str) -> None:
    model, x = small_backbone(name, num_classes=5)
    model.eval()  # dropout off, so forward and forward_head(forward_features) must agree exactly
    features = model.forward_features(x)
    assert features.shape[:2] == (2, model.num_features)
    logits = model(x)
    if name == "unet":  # segmentation: per-pixel logits at the input's size
        assert logits.shape == (2, 5, *x.shape[-2:])
        assert model.forward_head(features, pre_logits=True).shape == (2, model.features_dim, *x.shape[-2:])
    else:
        assert logits.shape == (2, 5)
        assert model.forward_head(features, pre_logits=True).shape == (2, model.features_dim)
    assert torch.equal(model.forward_head(features), logits)

    assert model.feature_info and all({"module", "channels", "stride"} <= set(info) for info in model.feature_info)
    assert model.feature_info[-1]["channels"] == model.num_features
    strides = [info["stride"] for info in model.feature_info]
    assert strides == sorted(strides) or name == "unet"  # a U-Net's decoder climbs back to stride 1
    names = dict(model.named_modules())
    assert all(info["module"] in names for info in model.feature_info)

    model.reset_classifier(0)
    assert model.num_classes == 0
    assert torch.equal(model.forward_head(features), model.forward_head(features, pre_logits=True))
    model.reset_classifier(3)
    assert model.forward_head(features).shape[:2] == (2, 3)


@pytest.mark.parametrize("name", ["lenet5", "nature_cnn", "impala_cnn", "resnet18_cifar"])
def test_num_classes_zero_is_a_pure_encoder(name: str) -> None:
    model, x = small_backbone(name, num_classes=0)
    assert model(x).shape == (2, model.features_dim)
    assert not any(isinstance(m, torch.nn.Linear) and m.out_features == 0 for m in model.modules())


def test_lenet5_matches_the_classic_parameter_count() -> None:
    model = vision.create_backbone("lenet5")
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert sum(p.numel() for p in model.c5.parameters()) == 48_120  # 16·5·5·120 + 120
    assert model(torch.rand(4, 1, 32, 32)).shape == (4, 10)


def test_dqn_encoders_have_the_published_torso_sizes() -> None:
    nature = vision.create_backbone("nature_cnn")
    assert nature.forward_features(torch.rand(1, 4, 84, 84)).shape == (1, 64, 7, 7)
    assert nature.features_dim == 512
    impala = vision.create_backbone("impala_cnn")
    assert impala.forward_features(torch.rand(1, 4, 84, 84)).shape == (1, 32, 11, 11)
    assert impala.features_dim == 256


@pytest.mark.parametrize("name", ["nature_cnn", "impala_cnn"])
def test_dqn_encoders_take_uint8_like_float_in_unit_range(name: str) -> None:
    model = vision.create_backbone(name, num_classes=6).eval()
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(model(frames), model(frames.float() / 255))


def test_resnet_stems_set_the_first_stage_stride() -> None:
    imagenet = vision.create_backbone("resnet18")
    cifar = vision.create_backbone("resnet18_cifar")
    assert imagenet.feature_info[0]["stride"] == 4 and cifar.feature_info[0]["stride"] == 1
    assert imagenet.forward_features(torch.rand(1, 3, 64, 64)).shape == (1, 512, 2, 2)  # stride 32
    assert cifar.forward_features(torch.rand(1, 3, 16, 16)).shape == (1, 512, 2, 2)  # stride 8
    assert imagenet.conv1.kernel_size == (7, 7) and cifar.conv1.kernel_size == (3, 3)


def test_resnet_blocks_start_as_identity_residuals() -> None:
    model = vision.create_backbone("resnet18_cifar")
    assert all(torch.all(block.bn2.weight == 0) for stage in (model.layer1, model.layer4) for block in stage)


ACTIVATION_MODULES = {
    "relu": torch.nn.ReLU,
    "leaky_relu": torch.nn.LeakyReLU,
    "prelu": torch.nn.PReLU,
    "elu": torch.nn.ELU,
    "gelu": torch.nn.GELU,
    "maxout": vision.layers.Maxout,
}


@pytest.mark.parametrize("act", sorted(ACTIVATION_MODULES))
def test_activations_are_configurable(act: str) -> None:
    model = vision.create_backbone("lenet5", num_classes=4, act=act)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 4)
    kinds = {type(m) for m in model.modules()} & {*ACTIVATION_MODULES.values(), torch.nn.Tanh}
    assert kinds == {ACTIVATION_MODULES[act]}


def test_activation_options_reach_the_modules() -> None:
    model = vision.create_backbone("nature_cnn", act={"name": "leaky_relu", "negative_slope": 0.2})
    assert all(m.negative_slope == 0.2 for m in model.modules() if isinstance(m, torch.nn.LeakyReLU))
    maxout3 = vision.create_backbone("mobilenet_v1_cifar", width_multiplier=0.25, act={"name": "maxout", "pieces": 3})
    assert maxout3.stem.conv.out_channels == 3 * 8
    assert maxout3(torch.rand(2, 3, 8, 8)).shape == (2, 1000)


def test_maxout_takes_the_max_over_channel_groups() -> None:
    x = torch.tensor([[1.0, 5.0, -2.0, -3.0]])
    assert torch.equal(vision.layers.Maxout(2)(x), torch.tensor([[5.0, -2.0]]))
    model = vision.create_backbone("lenet5", act="maxout")
    assert model.c1.conv.out_channels == 12  # widened so that maxout leaves the paper's 6 maps
    assert model.forward_features(torch.rand(2, 1, 32, 32)).shape == (2, 120, 1, 1)


def test_batch_norm_dropout_and_pooling_options() -> None:
    plain = vision.create_backbone("resnet18_cifar", batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    model = vision.create_backbone("mobilenet_v1_cifar", num_classes=3, drop_rate=0.3, global_pool="max")
    assert isinstance(model.head.global_pool, torch.nn.AdaptiveMaxPool2d)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in model.modules())
    lenet_bn = vision.create_backbone("lenet5", batch_norm=True, pool="max")
    assert isinstance(lenet_bn.c1.bn, torch.nn.BatchNorm2d) and isinstance(lenet_bn.s2, torch.nn.MaxPool2d)


def test_global_pooling_frees_flatten_heads_from_one_input_size() -> None:
    nature = vision.create_backbone("nature_cnn", global_pool="avg")
    assert nature(torch.rand(2, 4, 64, 96)).shape == (2, 512)
    lenet = vision.create_backbone("lenet5", global_pool="max")
    assert lenet(torch.rand(2, 1, 40, 40)).shape == (2, 10)


def test_flatten_head_checks_the_input_size() -> None:
    model = vision.create_backbone("alexnet", global_pool="flatten", input_size=224, head_hidden=(32,))
    assert model.head.flat_features == 256 * 6 * 6  # the paper's 6×6×256 layer
    with pytest.raises(LabError, match="input_size"):
        model(torch.rand(1, 3, 128, 128))


def test_unet_handles_sizes_that_do_not_halve_evenly() -> None:
    model = vision.create_backbone("unet", num_classes=3, widths=(8, 16, 32))
    assert model(torch.rand(1, 3, 19, 23)).shape == (1, 3, 19, 23)


def test_bad_names_and_options_raise_lab_errors() -> None:
    with pytest.raises(LabError, match="did you mean 'resnet18'"):
        vision.create_backbone("resnet_18")
    with pytest.raises(LabError, match="no option 'dropout'"):
        vision.create_backbone("resnet18", dropout=0.1)
    with pytest.raises(LabError, match="fixes stem"):
        vision.create_backbone("resnet18", stem="cifar")
    with pytest.raises(LabError, match="unknown activation 'rleu'"):
        vision.create_backbone("lenet5", act="rleu")
    with pytest.raises(LabError, match="maxout"):
        vision.create_backbone("resnet18", act="maxout")
    with pytest.raises(LabError, match="global_pool"):
        vision.create_backbone("vgg11", global_pool="mean")
