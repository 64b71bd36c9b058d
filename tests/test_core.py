"""The cycle of mgnet.core: shapes in 1D/2D/3D, sharing, recording, and cycle shapes."""

import pytest
import torch
from torch import nn

from mgnet.core import CycleRecord, Level, MgCycle, Step, Transfer

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def make_cycle(dim, cu, cf, nu, shape="down", share_B=True, with_pi=True, post=0):
    conv = CONV[dim]
    levels, transfers = [], []
    for l, n in enumerate(nu):
        A = conv(cu[l], cf[l], 3, padding=1, bias=False)
        B = conv(cf[l], cu[l], 3, padding=1, bias=False)
        Bs = [B if share_B else conv(cf[l], cu[l], 3, padding=1, bias=False) for _ in range(n)]
        posts = [Step(A, conv(cf[l], cu[l], 3, padding=1, bias=False)) for _ in range(post)]
        levels.append(Level(A, [Step(A, b, nn.ReLU(), nn.ReLU()) for b in Bs], posts))
    for l in range(len(nu) - 1):
        P = (
            nn.ConvTranspose1d
            if dim == 1
            else nn.ConvTranspose2d
            if dim == 2
            else nn.ConvTranspose3d
        )
        transfers.append(
            Transfer(
                R=conv(cf[l], cf[l + 1], 3, stride=2, padding=1, bias=False),
                Pi=conv(cu[l], cu[l + 1], 3, stride=2, padding=1, bias=False) if with_pi else None,
                P=P(cu[l + 1], cu[l], 2, stride=2, bias=False) if shape != "down" else None,
            )
        )
    return MgCycle(levels, transfers, shape=shape)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_down_sweep_shapes_per_level_channels(dim):
    cu, cf, nu = [4, 6, 8], [5, 7, 9], [2, 1, 3]
    cycle = make_cycle(dim, cu, cf, nu)
    n = 8
    f = torch.randn(2, cf[0], *([n] * dim))
    record = CycleRecord(residuals=True)
    out = cycle(f, record=record)
    assert out.shape == (2, cu[-1], *([n // 4] * dim))
    assert record.levels() == {0, 1, 2}
    for l in range(3):
        final = record.final(l)
        side = n // 2**l
        assert final["u"].shape == (2, cu[l], *([side] * dim))
        assert final["f"].shape == (2, cf[l], *([side] * dim))
        assert final["residual"].shape == (2,)
    # one event per smoothing step, plus the start of each level
    steps = [e for e in record.events if e["phase"] == "pre"]
    assert [e["level"] for e in steps] == [0, 0, 1, 2, 2, 2]
    assert torch.equal(record.final(2)["u"], out)


def test_shared_B_is_one_parameter_set():
    shared = make_cycle(2, [4, 4], [4, 4], [3, 3], share_B=True)
    per_step = make_cycle(2, [4, 4], [4, 4], [3, 3], share_B=False)
    n_shared = sum(p.numel() for p in shared.parameters())
    n_step = sum(p.numel() for p in per_step.parameters())
    conv = 4 * 4 * 9
    assert n_step - n_shared == 2 * 2 * conv  # two extra B per level, two levels


def test_smoothing_step_formula():
    torch.manual_seed(0)
    A = nn.Conv2d(3, 2, 3, padding=1, bias=False)
    B = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    step = Step(A, B, nn.ReLU(), nn.Tanh())
    u, f = torch.randn(1, 3, 6, 6), torch.randn(1, 2, 6, 6)
    expected = u + torch.tanh(B(torch.relu(f - A(u))))
    torch.testing.assert_close(step(u, f), expected)
    # a zero feature (None) skips A: u = sigma(B sigma(f))
    torch.testing.assert_close(step(None, f), torch.tanh(B(torch.relu(f))))


def test_projection_applies_to_updated_feature():
    A, B = nn.Identity(), nn.Identity()
    step = Step(A, B, project=nn.ReLU())
    u, f = torch.tensor([[1.0, 2.0]]), torch.tensor([[-5.0, 3.0]])
    # u + (f - u) = f, then projected onto u >= 0
    assert torch.equal(step(u, f), torch.tensor([[0.0, 3.0]]))


def test_restriction_formula_with_pi():
    torch.manual_seed(1)
    cycle = make_cycle(2, [3, 4], [2, 5], [1, 1])
    f = torch.randn(2, 2, 8, 8)
    record = CycleRecord()
    cycle(f, record=record)
    u1, f1 = record.final(0)["u"], record.final(0)["f"]
    t, A1, A2 = cycle.transfers[0], cycle.levels[0].A, cycle.levels[1].A
    with torch.no_grad():
        u2 = t.Pi(u1)
        f2 = t.R(f1 - A1(u1)) + A2(u2)
    restricted = [e for e in record.events if e["phase"] == "restrict"][0]
    torch.testing.assert_close(restricted["u"], u2)
    torch.testing.assert_close(restricted["f"], f2)


class CountingA(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, u):
        self.calls += 1
        return 2 * u


def test_zero_feature_never_applies_A():
    """Correction scheme (Pi = 0): the coarse grid starts from u = 0 without computing A 0."""
    A_fine, A_coarse = CountingA(), CountingA()
    half = nn.AvgPool1d(2)
    levels = [
        Level(A_fine, [Step(A_fine, nn.Identity())]),
        Level(A_coarse, [Step(A_coarse, nn.Identity())]),
    ]
    cycle = MgCycle(levels, [Transfer(R=half, Pi=None)], shape="down")
    cycle(torch.randn(1, 1, 8))
    assert A_fine.calls == 1  # only the restricted residual; the first step starts at zero
    assert A_coarse.calls == 0


def linear_reference_v_cycle(cycle, f, u):
    """A plain recursive V-cycle written out by hand, sigma = identity, Pi = 0."""

    def visit(l, u, f):
        level = cycle.levels[l]
        for step in level.pre:
            u = u + step.B(f - step.A(u))
        if l == len(cycle.levels) - 1:
            for step in level.post:
                u = u + step.B(f - step.A(u))
            return u
        t = cycle.transfers[l]
        f_c = t.R(f - level.A(u))
        first = cycle.levels[l + 1].pre[0]
        u_c = visit(l + 1, torch.zeros_like(first.B(f_c)), f_c)
        u = u + t.P(u_c)
        for step in level.post:
            u = u + step.B(f - step.A(u))
        return u

    return visit(0, u, f)


def test_v_cycle_matches_hand_written_recursion():
    torch.manual_seed(2)
    conv = lambda ci, co, **kw: nn.Conv1d(ci, co, 3, padding=1, bias=False, **kw)  # noqa: E731
    levels, transfers = [], []
    for _ in range(3):
        A = conv(2, 2)
        levels.append(Level(A, [Step(A, conv(2, 2)), Step(A, conv(2, 2))], [Step(A, conv(2, 2))]))
    for _ in range(2):
        transfers.append(
            Transfer(
                R=conv(2, 2, stride=2), Pi=None, P=nn.ConvTranspose1d(2, 2, 2, stride=2, bias=False)
            )
        )
    cycle = MgCycle(levels, transfers, shape="V")
    f, u = torch.randn(3, 2, 16), torch.randn(3, 2, 16)
    with torch.no_grad():
        torch.testing.assert_close(cycle(f, u), linear_reference_v_cycle(cycle, f, u))


@pytest.mark.parametrize("shape,coarse_visits", [("V", 1), ("W", 4), ("F", 3)])
def test_cycle_shapes_visit_coarsest_grid(shape, coarse_visits):
    cycle = make_cycle(1, [2, 2, 2], [2, 2, 2], [1, 1, 1], shape=shape, with_pi=False, post=1)
    record = CycleRecord()
    out = cycle(torch.randn(1, 2, 16), record=record)
    assert out.shape == (1, 2, 16)
    starts = [e for e in record.events if e["phase"] == "start" and e["level"] == 2]
    assert len(starts) == coarse_visits


def test_fas_correction_uses_pi_of_the_fine_feature():
    """u^l += P(u^{l+1} - Pi u^l): with an exact coarse solve of an unchanged problem,
    the correction is zero and u^l is unchanged (the FAS fixed point)."""
    half = nn.AvgPool1d(2)
    up = nn.Upsample(scale_factor=2)
    levels = [Level(nn.Identity(), []), Level(nn.Identity(), [Step(nn.Identity(), nn.Identity())])]
    cycle = MgCycle(levels, [Transfer(R=half, Pi=half, P=up)], shape="V")
    u = torch.randn(1, 1, 8)
    # f = A u with A = I: the fine residual is zero, so the coarse problem is solved by Pi u
    out = cycle(u.clone(), u.clone())
    torch.testing.assert_close(out, u)


def test_bad_arguments_are_one_line_errors():
    level = Level(nn.Identity(), [Step(nn.Identity(), nn.Identity())])
    with pytest.raises(ValueError, match="transfers: need 1 for 2 levels"):
        MgCycle([level, level], [])
    with pytest.raises(ValueError, match="shape: 'X' is not one of down, V, W, F"):
        MgCycle([level], [], shape="X")
    with pytest.raises(ValueError, match="needs an up-sweep"):
        MgCycle([level, level], [Transfer(R=nn.Identity())], shape="V")
    with pytest.raises(ValueError, match="levels: need at least one"):
        MgCycle([], [])
