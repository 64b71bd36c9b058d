"""mgnet.core against references written out by hand: the order in which each cycle shape
visits its levels, a two-grid cycle's numbers computed on paper, the in-place contract
(which fused paths run, whose tensors are overwritten), the record's contents and the
public defaults. Each test kills mutants of src/mgnet/core/cycle.py that the rest of the
suite let survive (see benchmarks/mutation_score.py)."""

import pytest
import torch
from torch import nn

from mgnet.core import CycleRecord, Level, MgCycle, Step, Transfer

F64 = torch.float64


class Scale(nn.Module):
    """x -> c x (A = c I or B = c I)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x):
        return self.c * x


class FusedScale(Scale):
    """B = c I with the fused in-place step u <- u + c (f - A u); counts its calls."""

    def __init__(self, c: float) -> None:
        super().__init__(c)
        self.fused = 0

    def update_(self, A, u, f):
        self.fused += 1
        return u.add_(self.c * (f - A(u)))


class PairSum(nn.Module):
    """R: (x_0 + x_1, x_2 + x_3, ...)."""

    def forward(self, x):
        return x.unflatten(-1, (-1, 2)).sum(-1)


class Repeat(nn.Module):
    """P: each coarse value copied to its two fine nodes."""

    def forward(self, e):
        return e.repeat_interleave(2, dim=-1)


class RepeatAddTo(Repeat):
    """P with the in-place ``add_to(u, e)``, u <- u + P e; counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.added = 0

    def add_to(self, u, e):
        self.added += 1
        return u.add_(self(e))


def two_grid(B_cls=Scale, P_cls=Repeat, nu=(1, 1)) -> MgCycle:
    """A = 2 I on both grids, B = I / 4, R = pair sums, P = copies, Pi = 0."""
    A = Scale(2.0)
    levels = [
        Level(A, [Step(A, B_cls(0.25)) for _ in range(nu[0])], [Step(A, B_cls(0.25))] * nu[1]),
        Level(A, [Step(A, B_cls(0.25))], [Step(A, B_cls(0.25))]),
    ]
    return MgCycle(levels, [Transfer(R=PairSum(), P=P_cls())], shape="V")


F = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]], dtype=F64)
# The V(1,1) two-grid cycle from u = 0 on paper (all values are exact binary fractions):
#   pre:      u = B f = (1/4, 1/2, 3/4, 1);  r = f - 2u = (1/2, 1, 3/2, 2)
#   coarse:   f_c = R r = (3/2, 7/2);  u_c = B f_c = (3/8, 7/8);  post: u_c += B (f_c - 2 u_c)
#             = (9/16, 21/16)
#   correct:  u += P u_c = (13/16, 17/16, 33/16, 37/16)
#   post:     u += B (f - 2u) = (21/32, 33/32, 57/32, 69/32)
TWO_GRID = torch.tensor([[[21 / 32, 33 / 32, 57 / 32, 69 / 32]]], dtype=F64)
CORRECTED = torch.tensor([[[13 / 16, 17 / 16, 33 / 16, 37 / 16]]], dtype=F64)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("P_cls", [Repeat, RepeatAddTo])
@pytest.mark.parametrize("B_cls", [Scale, FusedScale])
def test_two_grid_cycle_on_paper(B_cls, P_cls, inplace):
    cycle = two_grid(B_cls, P_cls)
    with torch.no_grad():
        out = cycle(F.clone(), torch.zeros_like(F), inplace=inplace)
    assert torch.equal(out, TWO_GRID)


def test_recorded_cycle_on_paper():
    """The record's u after each phase, and its residual norms |f - A u| per sample."""
    cycle = two_grid()
    record = CycleRecord(residuals=True)
    cycle(F, torch.zeros_like(F), record=record)
    correct = [e for e in record.events if e["phase"] == "correct"]
    assert len(correct) == 1 and torch.equal(correct[0]["u"], CORRECTED)
    last = record.events[-1]
    assert torch.equal(last["u"], TWO_GRID)
    expected = (F - 2 * TWO_GRID).flatten(1).norm(dim=1)  # 2 = A, by hand
    assert torch.equal(last["residual"], expected)


def test_record_residual_by_hand():
    u = torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=F64)
    f = torch.tensor([[3.0, 1.0], [4.0, 0.0]], dtype=F64)
    record = CycleRecord(residuals=True)
    record.add(0, "pre", 1, u, f, Scale(2.0))  # f - 2u = (1, 3), (3, -4)
    record.add(0, "pre", 2, u, f)  # no A: the residual is f itself
    record.add(0, "start", 0, None, f, Scale(2.0))  # u = 0: the residual is f
    norms = [e["residual"].tolist() for e in record.events]
    assert norms == [[10**0.5, 5.0], [10**0.5, 4.0], [10**0.5, 4.0]]


def test_record_without_residuals_and_unvisited_level():
    record = CycleRecord()
    two_grid()(F, record=record)
    assert all("residual" not in e for e in record.events)
    assert record.levels() == {0, 1}
    with pytest.raises(KeyError, match="level=2 was not visited; visited \\[0, 1\\]"):
        record.final(2)


# (level, phase, step) of every recorded event, written out by hand for three levels with
# two pre-smoothing steps on the finest grid and one elsewhere, one post-smoothing step.
COARSEST = [(2, "start", 0), (2, "pre", 1), (2, "post", 1)]
V1 = [(1, "start", 0), (1, "pre", 1), (2, "restrict", 0), *COARSEST]
V1 += [(1, "correct", 0), (1, "post", 1)]
W1 = [(1, "start", 0), (1, "pre", 1), (2, "restrict", 0), *COARSEST, *COARSEST]
W1 += [(1, "correct", 0), (1, "post", 1)]
F1 = W1  # F on level 1 visits level 2 as F then V: two coarsest visits, as W
ORDER = {
    "down": [(0, "start", 0), (0, "pre", 1), (0, "pre", 2), (1, "restrict", 0)]
    + [(1, "start", 0), (1, "pre", 1), (2, "restrict", 0), (2, "start", 0), (2, "pre", 1)],
    "V": [(0, "start", 0), (0, "pre", 1), (0, "pre", 2), (1, "restrict", 0), *V1]
    + [(0, "correct", 0), (0, "post", 1)],
    "W": [(0, "start", 0), (0, "pre", 1), (0, "pre", 2), (1, "restrict", 0), *W1, *W1]
    + [(0, "correct", 0), (0, "post", 1)],
    # F: the coarse grid is visited by an F-cycle first, then by a V-cycle
    "F": [(0, "start", 0), (0, "pre", 1), (0, "pre", 2), (1, "restrict", 0), *F1, *V1]
    + [(0, "correct", 0), (0, "post", 1)],
}


def three_levels(shape: str) -> MgCycle:
    A = Scale(2.0)
    levels = [Level(A, [Step(A, Scale(0.25))] * n, [Step(A, Scale(0.25))]) for n in (2, 1, 1)]
    transfers = [Transfer(R=PairSum(), P=Repeat()) for _ in range(2)]
    return MgCycle(levels, transfers, shape=shape)


@pytest.mark.parametrize("shape", ["down", "V", "W", "F"])
def test_visit_order_of_each_cycle_shape(shape):
    record = CycleRecord()
    three_levels(shape)(torch.ones(1, 1, 8, dtype=F64), record=record)
    assert [(e["level"], e["phase"], e["step"]) for e in record.events] == ORDER[shape]


def test_shape_given_to_forward_is_checked_and_used():
    cycle = three_levels("V")
    f = torch.ones(1, 1, 8, dtype=F64)
    assert cycle(f, shape="down").shape == (1, 1, 2)  # u^J of the down-sweep
    record = CycleRecord()
    cycle(f, shape="W", record=record)
    assert [(e["level"], e["phase"], e["step"]) for e in record.events] == ORDER["W"]
    with pytest.raises(ValueError, match="shape: 'X' is not one of down, V, W, F"):
        cycle(f, shape="X")
    no_P = MgCycle(cycle.levels, [Transfer(R=PairSum()), Transfer(R=PairSum())])
    with pytest.raises(ValueError, match="shape: 'V' needs an up-sweep"):
        no_P(f, shape="V")


def test_level_nu_counts_pre_and_post_steps():
    A = Scale(2.0)
    step = Step(A, Scale(0.25))
    assert Level(A, [step, step], [step]).nu == (2, 1)
    assert Level(A, [step]).nu == (1, 0)


@pytest.mark.parametrize("nonlinear", ["sigma_in", "sigma_out", "project"])
def test_fused_update_only_without_sigma_and_projection(nonlinear):
    """With sigma or a projection the step is u + sigma(B sigma(f - A u)), never B.update_;
    without them an in-place step is B.update_ alone."""
    A, B = Scale(2.0), FusedScale(0.25)
    u = torch.tensor([[1.0, -3.0]], dtype=F64)
    f = torch.tensor([[-4.0, 2.0]], dtype=F64)
    with torch.no_grad():
        linear = Step(A, B)(u.clone(), f, inplace=True)
        assert B.fused == 1
        assert torch.equal(linear, u + 0.25 * (f - 2 * u))  # (0.5, -1)
        step = Step(A, B, **{nonlinear: nn.ReLU()})
        out = step(u.clone(), f, inplace=True)
    assert B.fused == 1
    relu = torch.relu
    expected = {
        "sigma_in": u + 0.25 * relu(f - 2 * u),  # (1, -1)
        "sigma_out": u + relu(0.25 * (f - 2 * u)),  # (1, -1)
        "project": relu(u + 0.25 * (f - 2 * u)),  # (0.5, 0)
    }[nonlinear]
    assert torch.equal(out, expected)


def test_inplace_cycle_overwrites_the_callers_u_and_only_then():
    """``inplace=True`` under no_grad hands u to the cycle: the result is u itself, and P's
    add_to does the correction. Otherwise u is left alone and add_to is never called, also
    where the finest grid has no pre-smoothing (u reaches the correction unchanged)."""
    for nu in [(1, 1), (0, 1)]:
        cycle = two_grid(FusedScale, RepeatAddTo, nu=nu)
        P, B = cycle.transfers[0].P, cycle.levels[0].post[0].B
        u = torch.full_like(F, 0.5)
        with torch.no_grad():
            kept = cycle(F, u)
            assert torch.equal(u, torch.full_like(F, 0.5))
            assert (P.added, B.fused) == (0, 0)
            out = cycle(F, u, inplace=True)
        assert out is u and torch.equal(out, kept)
        assert P.added == 1 and B.fused == 1
        record = CycleRecord()
        with torch.no_grad():
            u = torch.full_like(F, 0.5)
            assert torch.equal(cycle(F, u, inplace=True, record=record), kept)
        assert torch.equal(u, torch.full_like(F, 0.5)), "a recorded cycle never works in place"
        assert P.added == 1


def test_inplace_correction_without_add_to():
    """A P without add_to: the in-place cycle adds P e into u itself."""
    cycle = two_grid(Scale, Repeat, nu=(0, 1))
    u = torch.zeros_like(F)
    with torch.no_grad():
        out = cycle(F, u, inplace=True)
        reference = cycle(F, torch.zeros_like(F))
    assert out is u and torch.equal(out, reference)


def test_public_smooth_allocates_by_default():
    cycle = two_grid()
    u = torch.zeros_like(F)
    with torch.no_grad():
        smoothed = cycle.smooth(0, u, F, "pre")
    assert torch.equal(u, torch.zeros_like(F))
    assert torch.equal(smoothed, 0.25 * F)


def test_coarsest_grid_without_steps_returns_zero_feature():
    """Pi = 0 and no smoothing on the coarsest grid: u^J is zero, returned as a tensor."""
    A = Scale(2.0)
    cycle = MgCycle([Level(A, [Step(A, Scale(0.25))]), Level(A, [])], [Transfer(R=PairSum())])
    out = cycle(F)
    assert torch.equal(out, torch.zeros(1, 1, 2, dtype=F64))


# FMG on the two grids from u = 0, on paper (exact binary fractions again):
#   f^2 = R f = (3, 7); the coarsest visit: u = B f^2 = (3/4, 7/4), post-smoothing
#   u += B (f^2 - 2u) = (9/8, 21/8); interpolated u^1 = P u^2 = (9/8, 9/8, 21/8, 21/8);
#   one V(1,1) cycle on level 1: pre (13/16, 17/16, 33/16, 37/16); f_c = R (f - 2u)
#   = (-3/4, -7/4), u_c = (-3/16, -7/16) then (-9/32, -21/32); corrected
#   (17/32, 25/32, 45/32, 53/32); post (33/64, 57/64, 93/64, 117/64)
FMG = torch.tensor([[[33 / 64, 57 / 64, 93 / 64, 117 / 64]]], dtype=F64)


@pytest.mark.parametrize("inplace", [False, True])
def test_fmg_two_grids_on_paper(inplace):
    cycle = two_grid(FusedScale, RepeatAddTo)
    with torch.no_grad():
        # by default one V cycle per level, allocating
        out = cycle.fmg(F, inplace=True) if inplace else cycle.fmg(F)
        B = cycle.levels[0].pre[0].B
        assert B.fused == (1 if inplace else 0), "the in-place path runs only when asked"
    assert torch.equal(out, FMG)
    assert torch.equal(F, torch.tensor([[[1.0, 2.0, 3.0, 4.0]]], dtype=F64))


def reference_cycle(cycle, l, u, f, shape):
    """The linear cycle (sigma = identity, Pi = 0) written out by hand, u a tensor."""
    level = cycle.levels[l]
    for step in level.pre:
        u = u + step.B(f - step.A(u))
    if l < len(cycle.levels) - 1:
        t = cycle.transfers[l]
        f_c = t.R(f - level.A(u))
        e = torch.zeros_like(f_c)
        for coarse in {"V": "V", "W": "WW", "F": "FV"}[shape]:
            e = reference_cycle(cycle, l + 1, e, f_c, coarse)
        u = u + t.P(e)
    for step in level.post:
        u = u + step.B(f - step.A(u))
    return u


def reference_fmg(cycle, f, cycles, shape):
    fs = [f]
    for t in cycle.transfers:
        fs.append(t.R(fs[-1]))
    u = reference_cycle(cycle, len(fs) - 1, torch.zeros_like(fs[-1]), fs[-1], shape)
    for l in reversed(range(len(fs) - 1)):
        u = cycle.transfers[l].P(u)
        for _ in range(cycles):
            u = reference_cycle(cycle, l, u, fs[l], shape)
    return u


@pytest.mark.parametrize("shape,cycles", [("V", 2), ("W", 1), ("F", 3)])
def test_fmg_four_levels_against_hand_recursion(shape, cycles):
    """Four levels with a different A and B on each, so a level mix-up shows."""
    levels = []
    for l in range(4):
        A = Scale(2.0 + l)
        levels.append(Level(A, [Step(A, Scale(1 / (4 + l)))], [Step(A, Scale(1 / (5 + l)))]))
    cycle = MgCycle(levels, [Transfer(R=PairSum(), P=Repeat()) for _ in range(3)], shape="V")
    f = torch.linspace(-1, 2, 16, dtype=F64).reshape(1, 1, 16) ** 2
    record = CycleRecord()
    out = cycle.fmg(f, cycles=cycles, shape=shape, record=record)
    torch.testing.assert_close(out, reference_fmg(cycle, f, cycles, shape), rtol=1e-13, atol=0)
    assert out.shape == f.shape
    assert record.events[0]["level"] == 3, "FMG starts on the coarsest level"
    starts = [e["level"] for e in record.events if e["phase"] == "start" and e["step"] == 0]
    finest_visits = starts.count(0)
    assert finest_visits == cycles


def test_fmg_bad_arguments():
    cycle = two_grid()
    with pytest.raises(ValueError, match="shape: FMG cycles are 'V', 'W' or 'F', got 'down'"):
        cycle.fmg(F, shape="down")
    with pytest.raises(ValueError, match="cycles: need at least one cycle per level, got 0"):
        cycle.fmg(F, cycles=0)
    no_P = MgCycle(cycle.levels, [Transfer(R=PairSum())])
    with pytest.raises(ValueError, match="shape: 'V' needs an up-sweep"):
        no_P.fmg(F)


# ----------------------------------------------------------------- fused hooks of R and P
class FusedPairSum(PairSum):
    """R with the fused hooks of mgnet.core.protocols, computing exactly what the cycle
    computes step by step, and recording what it was asked to do."""

    def __init__(self, fuse: bool = True) -> None:
        super().__init__()
        self.fuse = fuse
        self.calls: list[str] = []
        self.Bs: list = []

    def restrict_residual(self, A, u, f):
        self.calls.append("restrict_residual")
        return self(f if u is None else f - A(u))

    def smooth_restrict_(self, A, u, f, Bs):
        self.calls.append("smooth_restrict_")
        if not self.fuse:
            return None
        self.Bs = list(Bs)
        for B in Bs:
            u = B(f) if u is None else u.add_(B(f - A(u)))
        return u, self(f if u is None else f - A(u))  # no steps from zero: u stays zero


class FusedRepeat(Repeat):
    """P with ``add_to_smooth_``: u <- u + P e, then the post-smoothing steps."""

    def __init__(self, fuse: bool = True) -> None:
        super().__init__()
        self.fuse = fuse
        self.calls = 0
        self.Bs: list = []

    def add_to_smooth_(self, u, e, A, f, Bs):
        self.calls += 1
        if not self.fuse:
            return None
        self.Bs = list(Bs)
        u.add_(self(e))
        for B in Bs:
            u.add_(B(f - A(u)))
        return u


class NewtonLike(Scale):
    """A B that asks for the iterate (``needs_u`` on the class) and ignores it."""

    needs_u = True

    def forward(self, r, u=None):
        return self.c * r


def fused_two_grid(R=None, P=None, Pi=None, sigma_R=None, nu=(1, 1), step=None):
    """``two_grid`` with fused R and P; ``step`` builds the fine grid's steps from (A, B)."""
    A = Scale(2.0)
    step = step or (lambda A, B: Step(A, B))
    fine = Level(
        A,
        [step(A, Scale(0.25)) for _ in range(nu[0])],
        [step(A, Scale(0.25)) for _ in range(nu[1])],
    )
    coarse = Level(A, [Step(A, Scale(0.25))], [Step(A, Scale(0.25))])
    transfer = Transfer(R=R or FusedPairSum(), P=P or FusedRepeat(), Pi=Pi, sigma_R=sigma_R)
    return MgCycle([fine, coarse], [transfer], shape="V")


def test_fused_hooks_run_the_whole_level_in_place():
    cycle = fused_two_grid(nu=(2, 1))
    R, P = cycle.transfers[0].R, cycle.transfers[0].P
    u = torch.zeros_like(F)
    with torch.no_grad():
        out = cycle(F, u, inplace=True)
        reference = two_grid(nu=(2, 1))(F, torch.zeros_like(F))
    assert out is u and torch.equal(out, reference)
    assert R.calls == ["smooth_restrict_"] and P.calls == 1
    assert R.Bs == [s.B for s in cycle.levels[0].pre]  # the steps' B, in order
    assert P.Bs == [s.B for s in cycle.levels[0].post]


def test_fused_restriction_of_the_residual_when_not_in_place():
    cycle = fused_two_grid()
    R, P = cycle.transfers[0].R, cycle.transfers[0].P
    out = cycle(F, torch.zeros_like(F))
    assert torch.equal(out, TWO_GRID)
    assert R.calls == ["restrict_residual"] and P.calls == 0


def test_declined_fusion_runs_the_steps_one_by_one():
    cycle = fused_two_grid(R=FusedPairSum(fuse=False), P=FusedRepeat(fuse=False))
    R, P = cycle.transfers[0].R, cycle.transfers[0].P
    with torch.no_grad():
        out = cycle(F, torch.zeros_like(F), inplace=True)
    assert torch.equal(out, TWO_GRID)
    assert R.calls == ["smooth_restrict_", "restrict_residual"] and P.calls == 1


def _instance_needs_u(A, B):
    B.needs_u = True  # on the instance, not the class
    B.forward = lambda r, u=None: 0.25 * r
    return Step(A, B)


NOT_FUSABLE = {
    "another A": lambda A, B: Step(Scale(2.0), B),
    "sigma_in": lambda A, B: Step(A, B, sigma_in=nn.Identity()),
    "sigma_out": lambda A, B: Step(A, B, sigma_out=nn.Identity()),
    "project": lambda A, B: Step(A, B, project=nn.Identity()),
    "needs_u on the class": lambda A, B: Step(A, NewtonLike(0.25)),
    "needs_u on the instance": _instance_needs_u,
}


@pytest.mark.parametrize("case", list(NOT_FUSABLE))
def test_steps_that_cannot_be_fused(case):
    """Each of these steps keeps the cycle off the fused hooks (the values stay those of
    the plain two-grid cycle: every case computes the same step)."""
    cycle = fused_two_grid(step=NOT_FUSABLE[case])
    R, P = cycle.transfers[0].R, cycle.transfers[0].P
    with torch.no_grad():
        out = cycle(F, torch.zeros_like(F), inplace=True)
    assert torch.equal(out, TWO_GRID)
    assert "smooth_restrict_" not in R.calls and P.calls == 0


@pytest.mark.parametrize("transfer", ["Pi", "sigma_R"])
def test_transfers_that_cannot_be_fused(transfer):
    cycle = fused_two_grid(**{transfer: nn.Identity() if transfer == "sigma_R" else PairSum()})
    R, P = cycle.transfers[0].R, cycle.transfers[0].P
    with torch.no_grad():
        out = cycle(F, torch.zeros_like(F), inplace=True)
    if transfer == "sigma_R":
        assert torch.equal(out, TWO_GRID)
    assert R.calls == ["restrict_residual"] and P.calls == 0


def test_no_fused_correction_for_a_zero_feature():
    """No pre-smoothing from u = 0: the fine feature is still zero (None) at the
    correction, which is then u = P e, never add_to_smooth_ on a missing tensor."""
    cycle = fused_two_grid(nu=(0, 1))
    P = cycle.transfers[0].P
    with torch.no_grad():
        out = cycle(F, inplace=True)
        reference = two_grid(nu=(0, 1))(F)
    assert torch.equal(out, reference) and P.calls == 0
