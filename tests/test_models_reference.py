"""Independent references for the models: forward passes written out by hand with
torch.nn.functional (MgNet's Algorithm 1 and head, a pre-activation block and network), and
every registered model's parameter count, spec string and input/output pinned as numbers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mgnet.models import (
    PreActBlock,
    PreActResNet,
    count_parameters,
    count_parameters_of,
    create_model,
    list_models,
    model_info,
)
from test_theory import randomize_bn  # BatchNorm far from the identity


def bn(x, m: nn.BatchNorm2d):
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)


def conv3(x, m: nn.Conv2d, stride: int = 1):
    assert m.bias is None and m.kernel_size == (3, 3)
    return F.conv2d(x, m.weight, stride=stride, padding=1)


# --------------------------------------------------------------- MgNet, Algorithm 1 by hand
def mgnet_by_hand(model, x):
    """He & Xu (2019), Algorithm 1 and the head, written out:

    f^1 = ReLU(BN(conv3x3(x))), u^{1,0} = 0
    for l = 1..J:
        for i = 1..nu_l:  u <- u + ReLU(BN(B^{l,i} * ReLU(BN(f - A^l * u))))
        if l < J:         u' = ReLU(BN(Pi * u))        (stride 2)
                          f' = ReLU(BN(R * (f - A^l * u))) + A^{l+1} * u'
    logits = fc(mean over space of u^J)
    """
    cyc = model.cycle
    f = F.relu(bn(conv3(x, cyc.f_in[0]), cyc.f_in[1]))
    u = torch.zeros(x.shape[0], model.cfg.channels_u[0], *f.shape[2:], dtype=x.dtype)
    for l, level in enumerate(cyc.levels):
        for step in level.pre:
            r = f - conv3(u, level.A)
            inner = F.relu(bn(r, step.sigma_in[0]))
            u = u + F.relu(bn(conv3(inner, step.B), step.sigma_out[0]))
        if l + 1 < len(cyc.levels):
            t, A_next = cyc.transfers[l], cyc.levels[l + 1].A
            u_next = F.relu(bn(conv3(u, t.Pi, stride=2), t.sigma_Pi[0]))
            r_next = F.relu(bn(conv3(f - conv3(u, level.A), t.R, stride=2), t.sigma_R[0]))
            f, u = r_next + conv3(u_next, A_next), u_next
    pooled = u.sum(dim=(2, 3)) / (u.shape[2] * u.shape[3])
    return pooled @ model.fc.weight.T + model.fc.bias


@pytest.mark.parametrize("spec", ["mgnet[2,1]-[3:4,5:6]-Bl", "mgnet[1,2,2]-[2:3,4:5,6:7]-Bli"])
def test_tiny_mgnet_equals_algorithm_1_written_by_hand(spec):
    torch.manual_seed(0)
    model = create_model(spec, in_chans=2, num_classes=3).double()
    randomize_bn(model)
    model.eval()
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    expected = mgnet_by_hand(model, x)
    with torch.no_grad():
        out = model(x)
    assert expected.abs().max() > 0.1 and expected.std() > 0.05  # not a trivial output
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_the_head_pools_by_average_not_max():
    torch.manual_seed(0)
    model = create_model("mgnet[1]-4", in_chans=1, num_classes=2).double().eval()
    u = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    pooled = model.forward_head(u, pre_logits=True)
    torch.testing.assert_close(pooled, u.sum(dim=(2, 3)) / 25, rtol=1e-14, atol=1e-14)
    assert (pooled - u.amax(dim=(2, 3))).abs().min() > 0.1  # max pooling would differ
    torch.testing.assert_close(
        model.forward_head(u), pooled @ model.fc.weight.T + model.fc.bias, rtol=1e-14, atol=1e-14
    )


# -------------------------------------------------------------- pre-activation ResNet by hand
def preact_block_by_hand(block, x):
    """He et al. (2016): a = ReLU(BN1(x)); y = conv2(ReLU(BN2(conv1(a)))) + s, where the
    shortcut s is x itself, or a 1x1 projection of the pre-activated a."""
    a = F.relu(bn(x, block.bn1))
    stride = block.conv1.stride[0]
    h = F.conv2d(a, block.conv1.weight, stride=stride, padding=1)
    h = F.conv2d(F.relu(bn(h, block.bn2)), block.conv2.weight, padding=1)
    s = x if block.shortcut is None else F.conv2d(a, block.shortcut.weight, stride=stride)
    return h + s


@pytest.mark.parametrize("c_in,c_out,stride", [(4, 4, 1), (4, 6, 2), (4, 6, 1)])
def test_preact_block_equals_the_block_written_by_hand(c_in, c_out, stride):
    torch.manual_seed(0)
    block = PreActBlock(c_in, c_out, stride).double()
    randomize_bn(block)
    block.eval()
    assert (block.shortcut is None) == (c_in == c_out and stride == 1)
    x = torch.randn(2, c_in, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), preact_block_by_hand(block, x), rtol=0, atol=1e-12)


def test_preact_resnet_equals_the_network_written_by_hand():
    torch.manual_seed(0)
    model = PreActResNet(blocks=(1, 2), width=4, num_classes=3, in_channels=2).double()
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    h = F.conv2d(x, model.conv1.weight, padding=1)
    for stage in model.stages:
        for block in stage:
            h = preact_block_by_hand(block, h)
    pooled = F.relu(bn(h, model.bn)).mean(dim=(2, 3))
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out, pooled @ model.fc.weight.T + model.fc.bias, rtol=0, atol=1e-12)


# ------------------------------------------------------------- every registered model, pinned
# name: (parameters at the defaults, in_channels, classes or output channels, input size)
PINNED = {
    "mgnet_cifar": (8_278_794, 3, 10, 32),
    "mgnet_cifar_constrained": (8_278_794, 3, 10, 32),
    "mgnet_cifar_wise_b": (10_638_090, 3, 10, 32),
    "mgnet_digits": (575_594, 1, 10, 8),
    "mgnet_digits_constrained": (575_594, 1, 10, 8),
    "mgnet_imagenet": (71_270_504, 3, 1000, 224),
    "mgnet_mnist": (575_594, 1, 10, 28),
    "plain_cnn": (288_746, 3, 10, 32),
    "preact_resnet18": (11_172_170, 3, 10, 32),
    "preact_resnet_digits": (174_778, 1, 10, 8),
    "resnet18": (11_689_512, 3, 1000, 224),
    "mgno": (482_705, 1, 1, 65),
    "fno": (2_368_001, 1, 1, 65),
    "fno_small": (457_409, 1, 1, 65),
    "unet": (482_449, 1, 1, 65),
}

SPECS = {
    "mgnet_cifar": "mgnet[2,2,2,2]-256-Bl",
    "mgnet_cifar_constrained": "mgnet[2,2,2,2]-256-Bl-proj",
    "mgnet_cifar_wise_b": "mgnet[2,2,2,2]-256-Bli",
    "mgnet_digits": "mgnet[2,2,2]-[32,64,128]-Bl",
    "mgnet_digits_constrained": "mgnet[2,2,2]-[32,64,128]-Bl-proj",
    "mgnet_imagenet": "mgnet[3,4,6,3]-[128,256,512,1024]-Bli-stem7",
    "mgnet_mnist": "mgnet[2,2,2]-[32,64,128]-Bl",
}


def test_every_registered_model_is_pinned():
    assert set(list_models()) == set(PINNED)  # a new model needs its numbers here
    assert {n for n in list_models() if model_info(n).spec is not None} == set(SPECS)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_registered_model_numbers(name):
    params, in_channels, outputs, size = PINNED[name]
    info = model_info(name)
    assert count_parameters_of(name) == params
    assert (info.in_channels, info.input_size) == (in_channels, size)
    assert (info.out_channels if info.is_operator else info.num_classes) == outputs
    with torch.device("meta"):
        model = create_model(name)
    assert model.in_channels == in_channels
    if name in SPECS:
        assert info.spec == SPECS[name] and model.spec == SPECS[name]


@pytest.mark.parametrize(
    "name,num_classes,expected",
    [
        ("mgnet_cifar", 100, 8_301_924),
        ("mgnet_cifar_wise_b", 100, 10_661_220),
        ("preact_resnet18", 100, 11_172_170 + 90 * 512 + 90),
    ],
)
def test_parameter_counts_with_other_heads(name, num_classes, expected):
    assert count_parameters_of(name, num_classes=num_classes) == expected


def test_meta_counts_equal_allocated_counts():
    for name in ("mgnet_digits", "preact_resnet_digits", "mgno", "unet", "fno_small"):
        assert count_parameters(create_model(name)) == PINNED[name][0]
