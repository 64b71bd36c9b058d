"""The FMG interpolation: CubicInterpolation against polynomials it must reproduce and
its order of accuracy, the compiled kernel against the PyTorch path, the cycle's
``interpolate`` hook, and what a solver's FMG pass gains from it (the algebraic error
against the discretization error)."""

import math

import pytest
import torch

from mgnet.multigrid import MultigridSolver, make_problem, smoothed_aggregation_solver
from mgnet.stencils import (
    CubicInterpolation,
    Interpolation,
    SparseTransfer,
    diffusion,
    kernels,
    laplacian,
)

torch.set_num_threads(1)


def nodes(shape, periodic=False):
    """The coordinates of a grid's nodes: interior nodes i/(n+1) (Dirichlet) or i/n."""
    axes = [
        torch.arange(n, dtype=torch.float64) / n
        if periodic
        else torch.arange(1, n + 1, dtype=torch.float64) / (n + 1)
        for n in shape
    ]
    return torch.meshgrid(*axes, indexing="ij")


def cubic_bubble(shape):
    """A product of cubics that vanish at 0 and 1: reproduced exactly by the interpolation."""
    v = torch.ones(shape, dtype=torch.float64)
    for i, x in enumerate(nodes(shape)):
        v = v * x * (1 - x) * (0.3 + (i + 1) * x)
    return v[None, None]


def paths(P, x):
    """P x by the compiled kernel (when numba is here) and by the PyTorch path."""
    a = P(x)
    with kernels.disabled():
        b = P(x)
    return a, b


@pytest.mark.parametrize("shape", [(7,), (31,), (15, 31), (7, 15, 7)])
def test_cubics_that_vanish_on_the_boundary_are_reproduced(shape):
    P = CubicInterpolation(shape)
    for out in paths(P, cubic_bubble(P.coarse_shape)):
        torch.testing.assert_close(out, cubic_bubble(shape), rtol=0, atol=1e-15)
    # linear interpolation does not reproduce them: the check can tell the two apart
    assert (
        float(
            (Interpolation(shape)(cubic_bubble(P.coarse_shape)) - cubic_bubble(shape)).abs().max()
        )
        > 1e-4
    )


def test_weights_by_hand():
    # m = 3 coarse nodes (x0, x1, x2) = (1, 2, 4) on 7 fine nodes, zero boundary values
    P = CubicInterpolation((7,))
    x = torch.tensor([[[1.0, 2.0, 4.0]]], dtype=torch.float64)
    expect = [
        (15 * 1 - 5 * 2 + 4) / 16,  # Lagrange on (0, x0, x1, x2) at the midpoint
        1.0,
        (9 * (1 + 2) - 4) / 16,  # (-1, 9, 9, -1)/16, the boundary's 0 as the first tap
        2.0,
        (9 * (2 + 4) - 1) / 16,
        4.0,
        (15 * 4 - 5 * 2 + 1) / 16,
    ]
    for out in paths(P, x):
        torch.testing.assert_close(out[0, 0], torch.tensor(expect, dtype=torch.float64))
    # periodic, m = 4: fine 2j = x_j, fine 2j + 1 = (-x_{j-1} + 9 x_j + 9 x_{j+1} - x_{j+2})/16
    P = CubicInterpolation((8,), "periodic")
    x = torch.tensor([[[1.0, 2.0, 4.0, 8.0]]], dtype=torch.float64)
    v = [1.0, 2.0, 4.0, 8.0]
    expect = []
    for j in range(4):
        expect += [v[j], (-v[j - 1] + 9 * v[j] + 9 * v[(j + 1) % 4] - v[(j + 2) % 4]) / 16]
    for out in paths(P, x):
        torch.testing.assert_close(out[0, 0], torch.tensor(expect, dtype=torch.float64))


@pytest.mark.parametrize("bc", ["dirichlet", "periodic"])
def test_fourth_order_where_linear_interpolation_is_second(bc):
    periodic = bc == "periodic"

    def u(shape):
        xs = nodes(shape, periodic)
        return (torch.sin(2 * math.pi * xs[0]) * torch.sin(math.pi * xs[1]) ** 2)[None, None]

    errors = {"cubic": [], "linear": []}
    for k in (5, 6, 7):
        shape = (2**k,) * 2 if periodic else (2**k - 1,) * 2
        for name, P in (
            ("cubic", CubicInterpolation(shape, bc)),
            ("linear", Interpolation(shape, bc)),
        ):
            errors[name].append(float((P(u(P.coarse_shape)) - u(shape)).abs().max()))
    for a, b in zip(errors["cubic"], errors["cubic"][1:]):
        assert 13 < a / b < 19  # h^4: 16 per halving
    for a, b in zip(errors["linear"], errors["linear"][1:]):
        assert 3.5 < a / b < 4.5  # h^2: 4
    assert errors["cubic"][-1] < errors["linear"][-1] / 100


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "shape,bc",
    [
        ((15,), "dirichlet"),
        ((31, 15), "dirichlet"),
        ((7, 7, 15), "dirichlet"),
        ((16, 32), "periodic"),
        ((8, 8, 16), "periodic"),
    ],
)
def test_kernel_matches_the_pytorch_path(shape, bc, dtype):
    pytest.importorskip("numba")
    P = CubicInterpolation(shape, bc)
    x = torch.randn(3, 1, *P.coarse_shape, dtype=dtype)
    a, b = paths(P, x)
    assert a.shape == (3, 1, *shape) and a.dtype == dtype
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-14)


def test_short_axes_are_interpolated_linearly():
    # 3 fine nodes (1 coarse) along axis 0: linear there, cubic along axis 1
    P = CubicInterpolation((3, 15))
    x = torch.randn(1, 1, 1, 7, dtype=torch.float64)
    expect = CubicInterpolation((15,))(x[:, :, 0])  # the cubic of the one coarse row
    out = P(x)
    torch.testing.assert_close(out[:, :, 1], expect)  # fine row 1 is coarse row 0
    torch.testing.assert_close(out[:, :, 0], expect / 2)  # halfway to the boundary's 0
    torch.testing.assert_close(out[:, :, 2], expect / 2)
    # all axes short: exactly the linear interpolation
    torch.testing.assert_close(
        CubicInterpolation((3, 3))(x[..., :1]), Interpolation((3, 3))(x[..., :1])
    )


def test_gradient_flows_through_the_pytorch_path():
    P = CubicInterpolation((7, 7))
    x = torch.randn(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(P, (x,))


def test_cycle_fmg_starts_each_level_from_the_given_interpolation():
    ml = MultigridSolver(laplacian((31, 31)), smoother="rbgs", device="cpu")
    cycle = ml.cycle
    f = torch.randn(1, 1, 31, 31, dtype=torch.float64)
    calls = []

    def tracing(t):
        def up(u):
            calls.append(tuple(u.shape[2:]))
            return t.P(u)

        return up

    with torch.no_grad():
        base = cycle.fmg(f, cycles=1)
        traced = cycle.fmg(f, cycles=1, interpolate=[tracing(t) for t in cycle.transfers])
        zero = cycle.fmg(
            f,
            cycles=1,
            interpolate=[
                lambda u: torch.zeros(
                    *u.shape[:2], *((2 * n + 1) for n in u.shape[2:]), dtype=u.dtype
                )
            ]
            * len(cycle.transfers),
        )
    torch.testing.assert_close(traced, base, rtol=0, atol=0)
    assert calls == [(1, 1), (3, 3), (7, 7), (15, 15)]  # coarsest first
    assert not torch.equal(zero, base)  # the start is used: a zero start gives another u
    with pytest.raises(ValueError, match=r"interpolate: one callable per transfer \(4\), got 1"):
        cycle.fmg(f, interpolate=[cycle.transfers[0].P])


@pytest.mark.parametrize("dim,n", [(2, 127), (3, 31)])
def test_solver_fmg_pass_gains_from_the_cubic_start(dim, n):
    prob = make_problem("poisson", dim, n)
    ml = MultigridSolver(prob.A, smoother="rbgs", nu=(1, 1), device="cpu")
    uh = ml.solve(prob.f, tol=1e-12)
    disc = prob.error(uh)
    alg = {
        i: float((ml.fmg(prob.f, cycles=1, interpolation=i) - uh).abs().max()) / disc
        for i in ("cubic", "cycle")
    }
    # 2D: 0.83x against 2.5x; 3D (red-black V(1,1) smooths less per cycle): about 2.5x less
    assert alg["cubic"] * 2.3 < alg["cycle"]
    if dim == 2:
        assert alg["cubic"] <= 0.9 < 2.0 <= alg["cycle"]
    assert all(isinstance(p, CubicInterpolation) for p in ml.fmg_interpolation())
    with pytest.raises(ValueError, match="interpolation: 'quintic' is not one of cubic, cycle"):
        ml.fmg(prob.f, interpolation="quintic")


def test_fmg_interpolation_keeps_a_p_built_from_the_operator_and_algebraic_p():
    inclusion = lambda x, y: torch.where((x - 0.4) ** 2 + (y - 0.6) ** 2 < 0.08, 1e4, 1.0)  # noqa: E731
    ml = MultigridSolver(diffusion((63, 63), inclusion), interpolation="operator", device="cpu")
    up = ml.fmg_interpolation()
    assert all(isinstance(p, SparseTransfer) for p in up)
    assert [p is t.P for p, t in zip(up, ml.cycle.transfers, strict=True)] == [True] * len(up)
    b = torch.ones(63, 63, dtype=torch.float64)
    x = ml.fmg(b, maxiter=30, tol=1e-8)
    assert ml.converged and x.shape == (63, 63)
    A = laplacian((31, 31)).to_sparse()
    amg = smoothed_aggregation_solver(A)
    assert amg.fmg_interpolation() is None  # no grid: the cycle's own P
    y = amg.fmg(torch.ones(31 * 31, dtype=torch.float64), maxiter=30, tol=1e-8)
    assert amg.converged and y.shape == (961,)
