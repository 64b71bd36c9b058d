"""The registry's interface: timm's create_model/list_models, the classifier head API, the
meta device, initialisation, and one-line refusals (bad names, degenerate or huge models)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mgnet.models.registry as registry
from mgnet.models import (
    CLASSIFIER,
    OPERATOR,
    MgNet,
    ModelTooLargeError,
    SpecError,
    count_parameters,
    count_parameters_of,
    create_model,
    list_models,
    model_info,
    parse_spec,
)
from mgnet.models.baselines import PlainCNN, PreActResNet

SRC = str(Path(__file__).resolve().parents[1] / "src")
SMALL_INPUT = {"mgnet_imagenet": 32, "resnet18": 32}


# ------------------------------------------------------------------ timm-like create_model
def test_create_model_takes_timms_arguments():
    model = create_model("mgnet_digits", pretrained=False, num_classes=7, in_chans=3)
    assert model.in_channels == 3 and model.num_classes == 7
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 7)
    same = create_model("mgnet_digits", num_classes=7, in_channels=3)
    assert count_parameters(same) == count_parameters(model)
    with pytest.raises(ValueError, match="^in_chans: 1 and in_channels: 3 are the same argument"):
        create_model("mgnet_digits", in_chans=1, in_channels=3)


def test_pretrained_is_refused_in_one_line():
    with pytest.raises(ValueError, match="^pretrained: no pretrained weights are published for"):
        create_model("mgnet_cifar", pretrained=True)
    with pytest.raises(TypeError, match="^pretrained: expected True or False"):
        create_model("mgnet_cifar", pretrained="yes")


@pytest.mark.parametrize("name,kind", [(None, "NoneType"), (3, "int"), (["mgnet_cifar"], "list")])
def test_model_name_of_the_wrong_type_is_a_type_error(name, kind):
    with pytest.raises(TypeError, match=f"^model: expected a model name or an MgNet spec .*{kind}"):
        create_model(name)


def test_list_models_takes_wildcards_like_timm():
    assert list_models("mgnet_cifar*") == [
        "mgnet_cifar",
        "mgnet_cifar_constrained",
        "mgnet_cifar_wise_b",
    ]
    assert list_models(["*digits*", "plain_*"]) == [
        "mgnet_digits",
        "mgnet_digits_constrained",
        "plain_cnn",
        "preact_resnet_digits",
    ]
    assert list_models("*digits*", exclude_filters="*constrained") == [
        "mgnet_digits",
        "preact_resnet_digits",
    ]
    assert list_models("MGNET_MNIST") == ["mgnet_mnist"]
    assert list_models("nothing*") == []
    everything = list_models()
    assert everything == sorted(everything) and len(everything) >= 14
    classifiers, operators = list_models(kind=CLASSIFIER), list_models(kind=OPERATOR)
    assert sorted(classifiers + operators) == everything
    assert set(operators) >= {"mgno", "fno", "unet"}
    with pytest.raises(ValueError, match="^kind: 'cnn' is not one of classifier, operator"):
        list_models(kind="cnn")


# ---------------------------------------------------------------- classifier head interface
@pytest.mark.parametrize("name", list_models(kind=CLASSIFIER))
def test_every_classifier_has_timms_head_interface(name):
    torch.manual_seed(0)
    info = model_info(name)
    model = create_model(name, num_classes=5).eval()
    size = SMALL_INPUT.get(name, info.input_size)
    x = torch.randn(2, info.in_channels, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.dim() == 4 and feats.shape[:2] == (2, model.num_features)
        pooled = model.forward_head(feats, pre_logits=True)
        torch.testing.assert_close(pooled, feats.mean(dim=(2, 3)))
        logits = model(x)
        torch.testing.assert_close(logits, model.forward_head(feats))
        torch.testing.assert_close(logits, model.get_classifier()(pooled))
        assert logits.shape == (2, 5) and model.num_classes == 5
        model.reset_classifier(3)
        assert model(x).shape == (2, 3) and model.num_classes == 3
        model.reset_classifier(0)
        torch.testing.assert_close(model(x), pooled)
    with pytest.raises(ValueError, match="global_pool: only 'avg'"):
        model.reset_classifier(3, global_pool="max")


def test_num_classes_zero_gives_pooled_features():
    model = create_model("mgnet_digits", num_classes=0).eval()
    assert isinstance(model.fc, nn.Identity)
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 128) and model.num_features == 128
    assert count_parameters(model) == 575_594 - (128 * 10 + 10)


@pytest.mark.parametrize("name", list_models())
def test_every_model_converts_to_channels_last(name):
    # `mgnet train --channels-last` converts the model: every parameter must allow it
    info = model_info(name)
    torch.manual_seed(0)
    model = create_model(name).eval()
    size = SMALL_INPUT.get(name, 33 if info.is_operator else info.input_size)
    x = torch.randn(2, info.in_channels, size, size)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------- meta device
def test_every_model_builds_on_the_meta_device():
    for name in list_models():
        with torch.device("meta"):
            model = create_model(name)
        assert all(p.is_meta for p in model.parameters()), name
    # counted without allocating: the 71M-parameter ImageNet model, and a spec string
    assert count_parameters_of("mgnet_imagenet") == 71_270_504
    assert count_parameters_of("mgnet_cifar", num_classes=100) == 8_301_924
    spec = "mgnet[1,2]-[8:16,16:32]-Bli"
    assert count_parameters_of(spec, in_chans=1) == count_parameters(create_model(spec, in_chans=1))


def test_the_memory_probe_draws_no_random_numbers():
    # create_model builds on the meta device first: seeded weights must be unchanged by it
    torch.manual_seed(0)
    a = create_model("mgnet_digits")
    torch.manual_seed(0)
    b = MgNet(parse_spec("mgnet[2,2,2]-[32,64,128]-Bl"), 10, 1, init="kaiming")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        torch.testing.assert_close(va, vb, rtol=0, atol=0)


# ---------------------------------------------------------------------- initialisation
def test_paper_models_start_from_pytorchs_default_init():
    # The authors' code sets no init: every conv is nn.Conv2d's own, U(-1/sqrt(fan_in), ...).
    torch.manual_seed(0)
    stem = nn.Conv2d(3, 256, 3, padding=1, bias=False)
    torch.manual_seed(0)
    model = create_model("mgnet_cifar")
    torch.testing.assert_close(model.cycle.f_in[0].weight, stem.weight, rtol=0, atol=0)
    A = model.cycle.levels[0].A.weight  # 256 -> 256, fan_in = fan_out = 2304
    default_std, kaiming_std = (1 / (3 * 2304)) ** 0.5, (2 / 2304) ** 0.5  # ratio sqrt(6)
    assert A.std().item() == pytest.approx(default_std, rel=0.02)
    assert A.abs().max().item() <= (1 / 2304) ** 0.5
    kaiming = create_model("mgnet_cifar", init="kaiming").cycle.levels[0].A.weight
    assert kaiming.std().item() == pytest.approx(kaiming_std, rel=0.02)
    for name in ("mgnet_cifar_wise_b", "mgnet_imagenet", "mgnet_cifar_constrained"):
        assert "init" not in model_info(name).defaults  # the default init
    # the small models keep the He-normal init their README results were measured with
    for name in ("mgnet_digits", "mgnet_mnist", "mgnet_digits_constrained"):
        assert model_info(name).defaults == {"init": "kaiming"}


@pytest.mark.parametrize("cls", [PreActResNet, PlainCNN])
def test_baselines_take_the_init_keyword(cls):
    def square_conv(model):  # a c -> c 3x3 convolution: fan_in = fan_out = 9 c
        return model.features[3] if cls is PlainCNN else model.stages[0][0].conv2

    torch.manual_seed(0)
    default = square_conv(cls(in_channels=1)).weight
    fan = default[0].numel()
    assert default.std().item() == pytest.approx((1 / (3 * fan)) ** 0.5, rel=0.05)
    kaiming = square_conv(cls(in_channels=1, init="kaiming")).weight
    assert kaiming.std().item() == pytest.approx((2 / fan) ** 0.5, rel=0.05)


# ------------------------------------------------------------------- one-line refusals
@pytest.mark.parametrize(
    "name,kwargs,error,message",
    [
        ("mgnet[0,0]-4", {}, SpecError, "nu: need at least one level and nu_l >= 1"),
        ("mgnet[2]-0", {}, SpecError, "channels_u: need 1 positive values"),
        ("mgnet[]-4", {}, SpecError, "is not a spec like"),
        ("mgnet[1]-" + "9" * 300, {}, SpecError, r"absurdly large"),
        ("mgnet[" + ",".join(["1"] * 17) + "]-4", {}, SpecError, "at most 16 levels"),
        ("mgnet[1000,1000]-4", {}, SpecError, "1024 smoothing steps in all, got 2 levels and 2000"),
        ("mgnet[2]-2000000", {}, SpecError, "at most 1048576 channels per level"),
        ("mgnet_cifar", {"nu": (2.5, 2)}, TypeError, "nu: expected a tuple of integers"),
        ("mgnet_cifar", {"num_classes": -1}, ValueError, "num_classes: must be an integer >= 0"),
        ("mgnet_cifar", {"num_classes": 2.0}, TypeError, "num_classes: expected an integer"),
        ("mgnet_cifar", {"in_chans": 0}, ValueError, "in_channels: must be an integer >= 1"),
        ("mgnet_cifar", {"in_chans": True}, TypeError, "in_channels: expected an integer"),
        ("mgnet_cifar", {"init": "xavier"}, ValueError, "init: 'xavier' is not one of default"),
        ("plain_cnn", {"width": 0}, ValueError, "width: must be an integer in 1.."),
        ("plain_cnn", {"depth": 0}, ValueError, "depth: must be an integer in 1..16"),
        ("plain_cnn", {"widht": 3}, ValueError, "does not accept widht; accepted: depth, init"),
        ("preact_resnet18", {"blocks": ()}, ValueError, "blocks: number of stages"),
        ("preact_resnet18", {"blocks": (2, 0)}, ValueError, "blocks: blocks per stage"),
        ("preact_resnet18", {"blocks": 4}, TypeError, "blocks: expected a sequence"),
        ("preact_resnet18", {"width": -8}, ValueError, "width: must be an integer"),
        ("resnet18", {"init": "kaiming"}, ValueError, "'resnet18' does not accept init"),
        ("mgno", {"num_classes": 10}, ValueError, "num_classes: 'mgno' is a neural operator"),
        ("mgnet_cifar", {"out_channels": 1}, ValueError, "out_channels: 'mgnet_cifar' is a"),
    ],
)
def test_degenerate_models_are_refused_in_one_line(name, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        create_model(name, **kwargs)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_a_huge_spec_is_refused_before_allocation(monkeypatch):
    # 54e12 parameters: no machine has the memory; refused from the meta-device probe
    with pytest.raises(ModelTooLargeError, match=r"^model: 'mgnet\[2,2\]-1000000' needs about"):
        create_model("mgnet[2,2]-1000000")
    # ... and against the memory this process is told is available (1 GiB here)
    monkeypatch.setattr(registry, "available_memory", lambda device: 2**30)
    with pytest.raises(ModelTooLargeError, match=r"GiB available; accepted: a model with fewer"):
        create_model("mgnet[2,2]-4096")  # 0.6 GiB of parameters, 1.2 GiB in all at 8x8
    create_model("mgnet_digits")  # 2 MiB: fine
    with torch.device("meta"):  # nothing is allocated on the meta device: no check
        create_model("mgnet[2,2]-4096")


def _measured_activations(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(module, args, out):
        nonlocal total
        total += out.numel() if isinstance(out, torch.Tensor) else 0

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize(
    "name,size",
    [
        ("mgnet[2,2]-[8:16,16:32]", 16),
        ("mgnet[3,1]-[8,16]-Bli-stem7", 32),
        ("preact_resnet_digits", 8),
        ("plain_cnn", 16),
        ("mgno", 33),
        ("fno_small", 33),
        ("unet", 33),
    ],
)
def test_activation_estimate_is_within_a_factor_two_of_a_real_forward(name, size):
    model = create_model(name, in_chans=1).eval()
    measured = _measured_activations(model, torch.randn(1, 1, size, size))
    estimate = model.activation_numel(size)
    assert 0.5 <= estimate / measured <= 2.0, (estimate, measured)


# ------------------------------------------------------------------------------- timm
def test_timm_create_model_builds_mgnet_models():
    timm = pytest.importorskip("timm")
    from mgnet.timm_compat import install_timm_hook

    install_timm_hook()  # timm is imported now: registers at once (idempotent)
    assert {"mgnet_cifar", "mgnet_digits", "preact_resnet18"} <= set(timm.list_models("*"))
    model = timm.create_model("mgnet_cifar", num_classes=100)
    assert isinstance(model, MgNet) and count_parameters(model) == 8_301_924
    small = timm.create_model("mgnet_digits", in_chans=3, num_classes=4)
    assert small(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match="^pretrained: no pretrained weights"):
        timm.create_model("mgnet_digits", pretrained=True)
    # timm's own names stay timm's
    assert type(timm.create_model("resnet18")).__module__.startswith("timm.")


def test_timm_sees_mgnet_models_when_imported_after_mgnet():
    pytest.importorskip("timm")
    code = (
        "import sys, mgnet\n"
        "assert 'timm' not in sys.modules\n"  # import mgnet does not import timm
        "import timm\n"
        "m = timm.create_model('mgnet_digits', num_classes=3)\n"
        "print(type(m).__name__, m.num_classes, timm.list_models('mgnet_digits*'))\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "MgNet 3 ['mgnet_digits', 'mgnet_digits_constrained']"
