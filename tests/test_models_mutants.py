"""Independent references for the models, written to kill the mutants of
benchmarks/mutation_score.py that the other model tests let survive: forward passes written
out by hand (the constrained MgNet, the ImageNet stem, the plain CNN), torchvision's own
resnet18, a NumPy Fourier layer, and the limits and sizes the models document."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mgnet.models import (
    MgNet,
    MgNetConfig,
    ModelInfo,
    SpecError,
    count_parameters,
    create_model,
    list_models,
    model_info,
    parse_spec,
    register_model,
)
from mgnet.models.baselines import PlainCNN, PreActResNet, torchvision_resnet18
from mgnet.models.common import MAX_CHANNELS, init_weights
from mgnet.models.operators import FNO2d, SpectralConv2d
from test_theory import randomize_bn  # BatchNorm far from the identity

torch.set_num_threads(1)


def bn(x, m: nn.BatchNorm2d):
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)


def conv(x, m: nn.Conv2d, stride: int = 1, padding: int = 1):
    assert m.bias is None
    return F.conv2d(x, m.weight, stride=stride, padding=padding)


# ------------------------------------------- MgNet variants, Algorithm 1 written out by hand
def constrained_mgnet_by_hand(model, x):
    """The constrained data-feature MgNet (spec token ``proj``), by hand: BatchNorm
    everywhere, ReLU only where it keeps u >= 0:

    f^1 = BN(conv3x3(x)), u^{1,0} = 0
    smoothing:    u <- ReLU(u + BN(B * BN(f - A u)))
    restriction:  u' = ReLU(BN(Pi * u)), f' = BN(R * (f - A u)) + A' * u'
    logits = fc(mean over space of u^J)
    """
    cyc = model.cycle
    f = bn(conv(x, cyc.f_in[0]), cyc.f_in[1])
    u = torch.zeros(x.shape[0], model.cfg.channels_u[0], *f.shape[2:], dtype=x.dtype)
    for l, level in enumerate(cyc.levels):
        for step in level.pre:
            inner = bn(f - conv(u, level.A), step.sigma_in)
            u = F.relu(u + bn(conv(inner, step.B), step.sigma_out))
        if l + 1 < len(cyc.levels):
            t, A_next = cyc.transfers[l], cyc.levels[l + 1].A
            u_next = F.relu(bn(conv(u, t.Pi, stride=2), t.sigma_Pi[0]))
            f = bn(conv(f - conv(u, level.A), t.R, stride=2), t.sigma_R) + conv(u_next, A_next)
            u = u_next
    return u.mean(dim=(2, 3)) @ model.fc.weight.T + model.fc.bias


def stem7_mgnet_by_hand(model, x):
    """MgNet with the ImageNet stem, by hand: f^1 = maxpool_{3x3, stride 2, pad 1}(ReLU(BN(
    conv7x7_{stride 2, pad 3}(x)))), then Algorithm 1 with BN + ReLU on one level."""
    cyc = model.cycle
    stem_conv, stem_bn = cyc.f_in[0], cyc.f_in[1]
    assert stem_conv.kernel_size == (7, 7)
    h = F.relu(bn(conv(x, stem_conv, stride=2, padding=3), stem_bn))
    f = F.max_pool2d(h, kernel_size=3, stride=2, padding=1)
    (level,) = cyc.levels
    u = torch.zeros(x.shape[0], model.cfg.channels_u[0], *f.shape[2:], dtype=x.dtype)
    for step in level.pre:
        inner = F.relu(bn(f - conv(u, level.A), step.sigma_in[0]))
        u = u + F.relu(bn(conv(inner, step.B), step.sigma_out[0]))
    return u.mean(dim=(2, 3)) @ model.fc.weight.T + model.fc.bias


@pytest.mark.parametrize(
    "spec,size,by_hand",
    [
        ("mgnet[2,1]-[3:4,5:6]-Bl-proj", 8, constrained_mgnet_by_hand),
        ("mgnet[1,2,1]-[2:3,4:5,6:7]-Bli-proj", 8, constrained_mgnet_by_hand),
        ("mgnet[2]-[3:4]-Bli-stem7", 16, stem7_mgnet_by_hand),
    ],
)
def test_mgnet_variants_equal_the_network_written_by_hand(spec, size, by_hand):
    torch.manual_seed(0)
    model = create_model(spec, in_chans=2, num_classes=3).double()
    randomize_bn(model)
    model.eval()
    x = torch.randn(3, 2, size, size, dtype=torch.float64)
    expected = by_hand(model, x)
    with torch.no_grad():
        out = model(x)
    assert expected.std() > 0.05  # not a trivial output
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_mgnet_features_and_head_size_follow_the_coarsest_channels():
    torch.manual_seed(0)
    model = create_model("mgnet[1,1]-[4,6]", in_chans=1, num_classes=2)
    assert model.num_features == 6 and model.fc.in_features == 6
    model.reset_classifier(5)  # a new head on num_features inputs
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 5)


def test_mgnet_refuses_a_side_too_small_even_when_the_other_is_large():
    model = create_model("mgnet[1,1,1]-4", in_chans=1, num_classes=2)  # needs 4 per side
    assert model.min_input_size == 4
    model(torch.randn(1, 1, 4, 9))
    with pytest.raises(ValueError, match=r"^input: spatial size \(9, 3\) is too small"):
        model(torch.randn(1, 1, 9, 3))
    stem7 = create_model("mgnet[1,1,1]-4-stem7", in_chans=1, num_classes=2)
    assert stem7.min_input_size == 16  # a factor 4 from the stem, 4 from two restrictions


def test_mgnet_checks_its_input_channels_itself():
    cfg = parse_spec("mgnet[1]-4")
    with pytest.raises(ValueError, match="^in_channels: must be an integer in 1..1048576, got 0"):
        MgNet(cfg, num_classes=2, in_channels=0)
    with pytest.raises(TypeError, match="^in_channels: expected an integer, got a bool"):
        MgNet(cfg, num_classes=2, in_channels=True)


def test_channel_limit_is_inclusive():
    wide = (MAX_CHANNELS,)
    assert MgNetConfig(nu=(1,), channels_u=wide, channels_f=wide).channels_u == (2**20,)
    with pytest.raises(SpecError, match="^channels_u: at most 1048576 channels per level"):
        MgNetConfig(nu=(1,), channels_u=(2**20 + 1,), channels_f=wide)


def test_spec_models_are_probed_at_the_size_of_one_coarsest_pixel():
    # side 2^(J-1) (times 4 for the ImageNet stem), at least 8
    assert model_info("mgnet[1]-4").input_size == 8
    assert model_info("mgnet[1,1,1,1,1]-4").input_size == 16
    assert model_info("mgnet[1,1,1,1,1,1]-4").input_size == 32
    assert model_info("mgnet[1,1,1]-4-stem7").input_size == 16


# ---------------------------------------------------------------- baselines by hand
def test_plain_cnn_equals_the_network_written_by_hand():
    """Stage s: (conv3x3 -> BN -> ReLU) twice on width 2^s channels, a 2x2 max-pool
    between stages; then the mean over space and the linear head."""
    torch.manual_seed(0)
    model = PlainCNN(width=3, depth=2, num_classes=4, in_channels=2).double()
    randomize_bn(model)
    model.eval()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [3, 3, 6, 6] and len(norms) == 4
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    h = x
    for k, (c, b) in enumerate(zip(convs, norms)):
        if k == 2:
            h = F.max_pool2d(h, 2)
        h = F.relu(bn(conv(h, c), b))
    assert h.shape[2:] == (4, 4)
    with torch.no_grad():
        assert model.forward_features(x).shape == h.shape
        out = model(x)
    expected = h.mean(dim=(2, 3)) @ model.fc.weight.T + model.fc.bias
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_baselines_reach_one_pixel_at_their_minimum_input_size():
    preact = PreActResNet(blocks=(1, 1, 1, 1), width=2, in_channels=1).eval()  # 3 strides 2
    plain = PlainCNN(width=2, depth=3, in_channels=1).eval()  # two max-pools
    assert preact.min_input_size == 8 and plain.min_input_size == 4
    with torch.no_grad():
        assert preact.forward_features(torch.randn(1, 1, 8, 8)).shape == (1, 16, 1, 1)
        assert plain.forward_features(torch.randn(1, 1, 4, 4)).shape == (1, 8, 1, 1)


def test_preact_blocks_per_stage_limit():
    with pytest.raises(
        ValueError, match=r"^blocks: blocks per stage: must be an integer in 1..1024"
    ):
        PreActResNet(blocks=(1025,), width=1)


def test_resnet18_is_torchvisions_resnet18():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    ours = torchvision_resnet18(num_classes=7)
    torch.manual_seed(0)
    ref = tv.models.resnet18(num_classes=7)
    theirs = ref.state_dict()
    mine = ours.state_dict()
    assert list(mine) == list(theirs)
    for key, value in theirs.items():
        assert torch.equal(mine[key], value), key  # same layers, same initialisation
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x), rtol=0, atol=0)


def test_resnet18_other_inputs_and_no_head():
    pytest.importorskip("torchvision")
    gray = torchvision_resnet18(num_classes=3, in_channels=1)
    assert gray.conv1.weight.shape == (64, 1, 7, 7)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert gray.eval()(x).shape == (2, 3)
    bare = torchvision_resnet18(num_classes=0, in_channels=1).eval()
    one = torchvision_resnet18(num_classes=1, in_channels=1).eval()
    assert isinstance(bare.fc, nn.Identity) and isinstance(one.fc, nn.Linear)
    with torch.no_grad():
        assert bare(x).shape == (2, 512) and one(x).shape == (2, 1)


def test_kaiming_init_skips_meta_modules_but_initialises_the_rest():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 64, 3, device="meta"), nn.Conv2d(64, 64, 3))
    init_weights(model, "kaiming")
    std = model[1].weight.std().item()
    assert std == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)  # He-normal, fan-out
    assert abs(std - (1 / (3 * 64 * 9)) ** 0.5) > 0.02  # PyTorch's default would differ


# ------------------------------------------------------------------- the Fourier layer
def spectral_conv_by_hand(x, w_re, w_im, m1, m2):
    """Li et al. (2020): keep the modes [:m1] and [-m1:] of the first axis and [:m2] of the
    second of rfft2(x), multiply by the complex (c_in, c_out) matrices, transform back."""
    h, w = x.shape[2:]
    X = np.fft.rfft2(x)
    W = w_re + 1j * w_im
    out = np.zeros((x.shape[0], W.shape[1], h, w // 2 + 1), dtype=complex)
    out[:, :, :m1, :m2] = np.einsum("bixy,ioxy->boxy", X[:, :, :m1, :m2], W[:, :, :m1])
    out[:, :, h - m1 :, :m2] = np.einsum("bixy,ioxy->boxy", X[:, :, h - m1 :, :m2], W[:, :, m1:])
    return np.fft.irfft2(out, s=(h, w))


def test_spectral_conv_equals_the_fourier_layer_by_hand():
    torch.manual_seed(0)
    layer = SpectralConv2d(2, 3, modes1=3, modes2=2).double()
    assert layer.weight_re.shape == layer.weight_im.shape == (2, 3, 6, 2)
    for weight in (layer.weight_re, layer.weight_im):  # uniform on [0, 1 / (c_in c_out))
        assert weight.min() >= 0 and weight.max() < 1 / 6 and weight.mean() > 1 / 24
    x = torch.randn(2, 2, 10, 12, dtype=torch.float64)
    with torch.no_grad():
        out = layer(x).numpy()
    w_re, w_im = layer.weight_re.detach().numpy(), layer.weight_im.detach().numpy()
    expected = spectral_conv_by_hand(x.numpy(), w_re, w_im, 3, 2)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_fno_sizes_and_limits():
    assert FNO2d(modes=2, padding=9, width=2, proj_width=2).min_input_size == 1
    assert FNO2d(modes=12, padding=9, width=2, proj_width=2).min_input_size == 15
    with pytest.raises(ValueError, match="^proj_width: must be an integer in 1.."):
        FNO2d(width=2, proj_width=0)


def test_fno_equals_the_network_written_by_hand():
    """Li et al. (2020): v = Lift([a, x, y]) (1x1), zero-padded by ``padding`` at the high
    end of each axis; v <- GELU(K v + W v) for every Fourier layer but the last (no GELU);
    cropped back; u = Proj(v), a 1x1 -> GELU -> 1x1 MLP."""
    torch.manual_seed(0)
    model = FNO2d(width=3, modes=2, layers=2, padding=3, proj_width=4).double()
    x = torch.randn(2, 1, 7, 6, dtype=torch.float64)
    b, _, h, w = x.shape
    gy = torch.linspace(0, 1, h, dtype=torch.float64).view(1, 1, h, 1).expand(b, 1, h, w)
    gx = torch.linspace(0, 1, w, dtype=torch.float64).view(1, 1, 1, w).expand(b, 1, h, w)
    v = F.conv2d(torch.cat([x, gx, gy], dim=1), model.lift.weight, model.lift.bias)
    v = F.pad(v, [0, 3, 0, 3])
    for i, (K, W) in enumerate(zip(model.spectral, model.pointwise)):
        k = spectral_conv_by_hand(
            v.detach().numpy(), K.weight_re.detach().numpy(), K.weight_im.detach().numpy(), 2, 2
        )
        v = torch.from_numpy(k) + F.conv2d(v, W.weight, W.bias)
        if i == 0:
            v = F.gelu(v)
    v = v[..., :h, :w]
    first, last = model.proj[0], model.proj[2]
    expected = F.conv2d(F.gelu(F.conv2d(v, first.weight, first.bias)), last.weight, last.bias)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 1, 7, 6) and expected.std() > 1e-3
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_one_class_gets_a_linear_head():
    for name in ("mgnet[1]-4", "plain_cnn", "preact_resnet_digits"):
        model = create_model(name, in_chans=1, num_classes=1).eval()
        assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 1
        with torch.no_grad():
            assert model(torch.randn(2, 1, 8, 8)).shape == (2, 1)


def test_baseline_width_limit_follows_the_number_of_stages():
    # the widest stage has width * 2^(stages - 1) channels, at most 2^20
    with torch.device("meta"):
        model = PreActResNet(blocks=(1, 1, 1), width=2**18, in_channels=1)
    assert model.num_features == 2**20
    with pytest.raises(ValueError, match=r"^width: must be an integer in 1..262144, got 262145"):
        PreActResNet(blocks=(1, 1, 1), width=2**18 + 1)
    with pytest.raises(ValueError, match=r"^width: must be an integer in 1..131072, got 262144"):
        PlainCNN(width=2**18, depth=4)


def test_count_parameters_can_leave_out_frozen_ones():
    model = PlainCNN(width=2, depth=1, num_classes=3, in_channels=1)
    # conv 1->2 and 2->2 (3x3, no bias), two BatchNorms (2 + 2 each), head 2x3 + 3
    assert count_parameters(model) == 18 + 36 + 8 + 9 == 71
    model.fc.requires_grad_(False)
    assert count_parameters(model) == 62
    assert count_parameters(model, trainable_only=False) == 71


def test_a_name_is_registered_once():
    before = list_models()
    with pytest.raises(ValueError, match="^name: model 'mgnet_cifar' is already registered"):
        register_model(ModelInfo(name="mgnet_cifar", build=PlainCNN, description="a second"))
    assert list_models() == before and model_info("mgnet_cifar").spec == "mgnet[2,2,2,2]-256-Bl"


def test_wrong_patterns_and_choices_name_what_is_accepted():
    with pytest.raises(
        TypeError, match=r"^filter: expected a string or a list of strings, got \[3\]$"
    ):
        list_models([3])
    with pytest.raises(SpecError, match="^stem: 'conv5' is not one of conv3, imagenet$"):
        MgNetConfig(nu=(1,), channels_u=(4,), channels_f=(4,), stem="conv5")
    with pytest.raises(SpecError, match="^share_A: 'all' is not one of level, step$"):
        MgNetConfig(nu=(1,), channels_u=(4,), channels_f=(4,), share_A="all")
