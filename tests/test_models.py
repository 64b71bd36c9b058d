"""Classifiers: exact parameter counts, forward/backward, the spec grammar, bad input."""

import pytest
import torch

from mgnet.core import CycleRecord, MgCycle
from mgnet.models import (
    MgNetConfig,
    SpecError,
    count_parameters,
    create_model,
    format_spec,
    list_models,
    model_info,
    parse_spec,
)


@pytest.mark.parametrize(
    "name,num_classes,expected",
    [
        ("mgnet_cifar", 10, 8_278_794),
        ("mgnet_cifar", 100, 8_301_924),
        ("mgnet_cifar_wise_b", 10, 10_638_090),
        ("mgnet_cifar_wise_b", 100, 10_661_220),
    ],
)
def test_paper_parameter_counts_exact(name, num_classes, expected):
    assert count_parameters(create_model(name, num_classes=num_classes)) == expected


def test_imagenet_parameter_count():
    n = count_parameters(create_model("mgnet_imagenet", num_classes=1000))
    assert abs(n - 71_300_000) <= 100_000
    assert n == 71_270_504


def test_spec_string_builds_the_same_model_as_the_registry():
    a = create_model("mgnet_cifar")
    b = create_model("mgnet[2,2,2,2]-256-Bl")
    assert count_parameters(a) == count_parameters(b)
    assert a.spec == "mgnet[2,2,2,2]-256-Bl"
    assert create_model("mgnet_imagenet").spec == "mgnet[3,4,6,3]-[128,256,512,1024]-Bli-stem7"


def test_mgnet_is_an_instance_of_the_core_cycle():
    model = create_model("mgnet_cifar")
    assert isinstance(model.cycle, MgCycle)
    level = model.cycle.levels[0]
    # A^l shared by the level's steps; B^l shared too (B^l model) ...
    assert all(s.A is level.A for s in level.pre)
    assert level.pre[0].B is level.pre[1].B
    # ... but one B^{l,i} per step in the wise-B model
    wise = create_model("mgnet_cifar_wise_b").cycle.levels[0]
    assert wise.pre[0].B is not wise.pre[1].B
    assert [lv.nu[0] for lv in model.cycle.levels] == [2, 2, 2, 2]


SMALL_INPUT = {"mgnet_imagenet": 32, "resnet18": 32}


@pytest.mark.parametrize("name", list_models(kind="classifier"))
def test_forward_backward_every_registered_classifier(name):
    torch.manual_seed(0)
    info = model_info(name)
    model = create_model(name, num_classes=7)
    size = SMALL_INPUT.get(name, info.input_size)
    x = torch.randn(2, info.in_channels, size, size)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(
    "spec",
    [
        "mgnet[2,2,2,2]-256-Bl",
        "mgnet[2,2,2,2]-256-Bli",
        "mgnet[3,4,6,3]-[128,256,512,1024]-Bli-stem7",
        "mgnet[1,2]-[8:16,16:32]-Bl",
        "mgnet[2]-4-Bli-Ali-linear-3d",
        "mgnet[1,1,1]-6-Bl-1d",
    ],
)
def test_spec_round_trip(spec):
    cfg = parse_spec(spec)
    assert format_spec(cfg) == spec
    assert parse_spec(format_spec(cfg)) == cfg


def test_spec_defaults_and_case():
    cfg = parse_spec("MgNet[2,3]-[16:32,64]")
    assert cfg == MgNetConfig(nu=(2, 3), channels_u=(16, 64), channels_f=(32, 64))
    assert format_spec(cfg) == "mgnet[2,3]-[16:32,64]-Bl"


@pytest.mark.parametrize("dim", [1, 3])
def test_other_dimensions(dim):
    model = create_model(f"mgnet[1,1]-[4,8]-{dim}d", in_channels=2, num_classes=3)
    x = torch.randn(2, 2, *([8] * dim))
    assert model(x).shape == (2, 3)


def test_unequal_feature_and_data_channels():
    model = create_model("mgnet[1,2]-[8:16,12:24]", in_channels=1)
    record = CycleRecord()
    model.eval()
    model.features(torch.randn(1, 1, 8, 8), record=record)
    assert record.final(0)["u"].shape[1] == 8 and record.final(0)["f"].shape[1] == 16
    assert record.final(1)["u"].shape[1] == 12 and record.final(1)["f"].shape[1] == 24


def test_linear_spec_has_no_batchnorm():
    model = create_model("mgnet[2,2]-4-linear", in_channels=1)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    convs = 1 + 2 * 2 + 2  # stem, A and B per level, Pi and R
    assert count_parameters(model) == (4 * 9) + (convs - 1) * 4 * 4 * 9 + 4 * 10 + 10


@pytest.mark.parametrize(
    "spec,message",
    [
        ("mgnet[2,2]", "is not a spec like"),
        ("mgnet[2,2]-[4,4,4]", "gives 3 channel counts for 2 levels"),
        ("mgnet[2,2]-4-Bx", "unknown option 'bx'"),
        ("mgnet[0,2]-4", "nu_l >= 1"),
        ("mgnet[2]-1:2:3", "use N or U:F"),
    ],
)
def test_bad_spec_errors(spec, message):
    with pytest.raises(SpecError, match=message):
        create_model(spec)


def test_unknown_model_lists_accepted_names():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; accepted: .*mgnet_cifar"):
        create_model("nope")


def test_wrong_in_channels_is_one_line_error():
    model = create_model("mgnet_digits")
    with pytest.raises(
        ValueError, match="in_channels: the model takes 1 input channels, the input has 3"
    ):
        model(torch.randn(2, 3, 8, 8))


def test_input_too_small_for_levels():
    model = create_model("mgnet_cifar")
    with pytest.raises(ValueError, match=r"too small for 4 levels; need at least 8 per side"):
        model(torch.randn(2, 3, 4, 4))
    imagenet = create_model("mgnet_imagenet")
    with pytest.raises(ValueError, match="need at least 32 per side"):
        imagenet(torch.randn(1, 3, 16, 16))


def test_wrong_rank_input():
    with pytest.raises(ValueError, match=r"input: expected a \(batch, 1, size, size\) tensor"):
        create_model("mgnet_digits")(torch.randn(1, 8, 8))


def test_unknown_override():
    with pytest.raises(ValueError, match="overrides: unknown option"):
        create_model("mgnet_digits", depth=3)
