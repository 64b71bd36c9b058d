"""mgnet.theory: the residual form of an MgNet level is a pre-activation ResNet stage."""

import pytest
import torch
from torch import nn

from mgnet.core import MgCycle, residual
from mgnet.models import PreActResNet, count_parameters, create_model
from mgnet.theory import level_to_preact, preact_to_level, step_to_preact


def randomize_bn(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def mgnet_level(nu=3, c=6, spec_tokens="Bli", seed=0):
    torch.manual_seed(seed)
    model = create_model(f"mgnet[{nu}]-{c}-{spec_tokens}", in_channels=c).double()
    randomize_bn(model, seed)
    return model.cycle.levels[0]


def run_level(level, f, u0=None):
    return MgCycle([level], [])(f, u0)


# ------------------------------------------------------------- section 1: residual form
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("share_B", ["Bl", "Bli"])
def test_mgnet_level_equals_preact_stage_in_residual_form(train, share_B):
    level = mgnet_level(spec_tokens=share_B).train(train)
    stage = level_to_preact(level).train(train)
    torch.manual_seed(1)
    f, u0 = torch.randn(4, 6, 8, 8, dtype=torch.float64), torch.randn(4, 6, 8, 8).double()
    r0 = residual(level.A, u0, f)
    out_preact = stage(r0)
    u = run_level(level, f, u0)
    r_mgnet = residual(level.A, u, f)
    assert (r_mgnet - r0).abs().max() > 0.5  # the steps really change the residual
    torch.testing.assert_close(out_preact, r_mgnet, rtol=1e-10, atol=1e-10)
    if train:  # the same tensors went through the same BN: same running statistics
        bn_mgnet = level.pre[1].sigma_in[0]
        torch.testing.assert_close(stage[1].bn1.running_mean, bn_mgnet.running_mean)
        torch.testing.assert_close(stage[1].bn1.running_var, bn_mgnet.running_var)


def test_weight_map_conv2_is_minus_A_and_conv1_is_B():
    level = mgnet_level(nu=2, spec_tokens="Bli")
    stage = level_to_preact(level)
    for block, step in zip(stage, level.pre):
        torch.testing.assert_close(block.conv2.weight, -level.A.weight, rtol=0, atol=0)
        torch.testing.assert_close(block.conv1.weight, step.B.weight, rtol=0, atol=0)
        torch.testing.assert_close(block.bn1.running_mean, step.sigma_in[0].running_mean)
        torch.testing.assert_close(block.bn2.weight, step.sigma_out[0].weight)
    # single step, same statement
    step = level.pre[0]
    r = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    block = step_to_preact(step).eval()
    step.eval()
    torch.testing.assert_close(block(r), r - level.A(step(None, r)))


def tied_preact_stage(nu=3, c=6, seed=0, tie=True):
    torch.manual_seed(seed)
    stage = PreActResNet(blocks=(nu,), width=c, in_channels=c).double().stages[0]
    randomize_bn(stage, seed)
    if tie:
        for block in stage[1:]:
            block.conv2.weight.data.copy_(stage[0].conv2.weight.data)
    return stage


@pytest.mark.parametrize("train", [False, True])
def test_preact_stage_with_tied_conv2_equals_mgnet_level(train):
    stage = tied_preact_stage().train(train)
    level = preact_to_level(stage).train(train)
    assert all(s.A is level.A for s in level.pre)  # one shared A^l
    x = torch.randn(4, 6, 8, 8, dtype=torch.float64)
    u = run_level(level, x)  # u^{l,0} = 0, f^l = x
    torch.testing.assert_close(x - level.A(u), stage(x), rtol=1e-10, atol=1e-10)


def test_round_trip_preact_to_mgnet_to_preact_is_identity():
    stage = tied_preact_stage().eval()
    again = level_to_preact(preact_to_level(stage)).eval()
    for a, b in zip(stage, again):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb
            torch.testing.assert_close(va, vb, rtol=0, atol=0)


def test_the_separating_restriction_is_the_shared_A():
    # pre-act ResNet: one A^{l,i} = -conv2 per block; MgNet refuses it and names the block
    untied = tied_preact_stage(tie=False)
    with pytest.raises(ValueError, match=r"conv2 of block 1 differs.*A\^l"):
        preact_to_level(untied)
    # ... and the tie is a real restriction: tying changes the function
    tied = tied_preact_stage(tie=True)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    assert (untied.eval()(x) - tied.eval()(x)).abs().max() > 0.1
    # MgNet u-form with one A^{l,i} per step (token Ali) has no residual stream
    with pytest.raises(ValueError, match=r"step 1 uses its own A\^\{l,i\}"):
        level_to_preact(mgnet_level(spec_tokens="Bli-Ali"))
    # parameter budget: a stage of nu blocks carries nu - 1 more A's than the MgNet level
    level = mgnet_level(nu=3, c=6, spec_tokens="Bli")
    stage = level_to_preact(level)
    extra = count_parameters(stage) - count_parameters(level)
    assert extra == 2 * level.A.weight.numel() == 2 * 6 * 6 * 9


def test_residual_form_errors_are_one_line():
    proj_level = create_model("mgnet[2]-4-proj", in_channels=4).cycle.levels[0]
    with pytest.raises(ValueError, match="projected step"):
        level_to_preact(proj_level)
    wide = create_model("mgnet[2]-4:6", in_channels=6).cycle.levels[0]
    with pytest.raises(ValueError, match="c_u = c_f"):
        level_to_preact(wide)
    lin = create_model("mgnet[2]-4-linear", in_channels=4).cycle.levels[0]
    with pytest.raises(ValueError, match="sigma_in"):
        level_to_preact(lin)
    projection_stage = PreActResNet(blocks=(2, 2), width=4).stages[1]
    with pytest.raises(ValueError, match="projection shortcut"):
        preact_to_level(projection_stage)
    with pytest.raises(ValueError, match="Level or a non-empty"):
        level_to_preact([])
