"""The compiled CPU kernels (mgnet.stencils.kernels) against the PyTorch reference path:
residual and A u, Jacobi and red-black updates, full weighting (alone and fused with the
residual) and interpolate-and-add, in 1D, 2D and 3D, odd and even sizes, Dirichlet and
periodic, constant and variable coefficients, float32 and float64; and the fall-backs."""

import importlib

import pytest
import torch

pytest.importorskip("numba")

from mgnet.multigrid import MultigridSolver, make_problem  # noqa: E402
from mgnet.stencils import (  # noqa: E402
    FullWeighting,
    Interpolation,
    Jacobi,
    StencilOperator,
    anisotropic,
    coarse_shape,
    diffusion,
    interpolation_matrix,
    kernels,  # noqa: E402
    laplacian,
    red_black,
    restriction_matrix,
)

torch.set_num_threads(1)
DTYPES = [torch.float64, torch.float32]


def _galerkin_3d() -> StencilOperator:
    """A 27-point constant stencil: R A P of the 3D 7-point Laplacian."""
    fine = laplacian((9, 9, 9))
    M = restriction_matrix(fine.shape) @ fine.to_sparse() @ interpolation_matrix(fine.shape)
    return StencilOperator.from_sparse(M, (4, 4, 4), tuple(2 * h for h in fine.h))


def _operators() -> dict:
    ramp2 = torch.linspace(0, 1, 49, dtype=torch.float64).reshape(7, 7)
    return {
        "1d-odd": laplacian(9, dim=1),
        "1d-even": laplacian(8, dim=1),
        "1d-periodic": laplacian(8, dim=1, bc="periodic", c=1.0),
        "1d-periodic-odd": laplacian(9, dim=1, bc="periodic", c=1.0),
        "1d-diffusion": diffusion(7, lambda x: 1 + x**2, dim=1),
        "2d-odd": laplacian((7, 9)),
        "2d-even": laplacian((6, 8)),
        "2d-9pt": laplacian((9, 9), points=9),
        "2d-9pt-periodic": laplacian((8, 8), points=9, bc="periodic", c=1.0),
        "2d-periodic": laplacian((8, 12), bc="periodic", c=1.0),
        "2d-periodic-odd": laplacian((7, 9), bc="periodic", c=1.0),
        "2d-anisotropic": anisotropic((7, 9), eps=(1.0, 0.1)),
        "2d-diffusion": diffusion((7, 9), lambda x, y: 1 + x * y),
        "2d-diffusion-periodic": diffusion((8, 10), lambda x, y: 1 + x * y, bc="periodic"),
        "2d-variable-c": laplacian((7, 7), c=ramp2),
        "3d-odd": laplacian((5, 7, 9)),
        "3d-even": laplacian((4, 6, 8)),
        "3d-periodic": laplacian((8, 8, 10), bc="periodic", c=0.5),
        "3d-diffusion": diffusion((5, 7, 9), lambda x, y, z: torch.exp(x - z)),
        "3d-27pt-galerkin": _galerkin_3d(),
    }


OPS = list(_operators())
TOL = {torch.float64: 1e-13, torch.float32: 2e-6}


def _close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> None:
    scale = b.abs().max().clamp_min(1.0)
    err = float((a - b).abs().max() / scale)
    assert err <= TOL[dtype], f"kernel vs torch: relative difference {err:.2e}"


def _data(op, dtype, batch=2, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, channels, *op.shape, generator=g, dtype=torch.float64).to(dtype)
    f = torch.randn(batch, channels, *op.shape, generator=g, dtype=torch.float64).to(dtype)
    return u, f


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", OPS)
def test_residual_and_apply_match_torch(name, dtype):
    op = _operators()[name].to(dtype)
    u, f = _data(op, dtype, channels=2 if name == "2d-odd" else 1)
    assert op.compiled(u, f), "the kernel should take this call"
    with torch.no_grad():
        r, Au = op.residual(u, f).clone(), op(u)
        with kernels.disabled():
            assert not op.compiled(u, f)
            r_ref, Au_ref = op.residual(u, f).clone(), op(u)
    _close(r, r_ref, dtype)
    _close(Au, Au_ref, dtype)
    norms = op.residual_norm(u, f)
    ref = r_ref.double().flatten(1).norm(dim=1)
    assert norms.dtype == torch.float64 and norms.shape == (u.shape[0],)
    assert float(((norms - ref).abs() / ref).max()) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", OPS)
def test_jacobi_update_matches_torch(name, dtype):
    op = _operators()[name].to(dtype)
    B = Jacobi(op, 0.7).to(dtype)
    u, f = _data(op, dtype, seed=1)
    with torch.no_grad():
        out = B.update_(op, u.clone(), f)
        with kernels.disabled():
            ref = B.update_(op, u.clone(), f)
    _close(out, ref, dtype)
    assert (out - u).abs().max() > 1e-3 * u.abs().max(), "the update changed nothing"


COLOURED = [
    n
    for n, op in _operators().items()
    if op.axis_neighbours and not (op.bc == "periodic" and any(s % 2 for s in op.shape))
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", COLOURED)
def test_red_black_updates_match_torch(name, dtype):
    op = _operators()[name].to(dtype)
    red, black = (B.to(dtype) for B in red_black(op))
    u, f = _data(op, dtype, seed=2)
    with torch.no_grad():
        out = black.update_(op, red.update_(op, u.clone(), f), f)
        with kernels.disabled():
            ref = black.update_(op, red.update_(op, u.clone(), f), f)
        # the red half-sweep leaves the black nodes alone
        half = red.update_(op, u.clone(), f)
    _close(out, ref, dtype)
    black_nodes = black.scale != 0
    assert torch.equal(half[..., black_nodes], u[..., black_nodes])
    assert not torch.equal(half[..., ~black_nodes], u[..., ~black_nodes])


@pytest.mark.parametrize("name", COLOURED)
def test_torch_colour_update_touches_one_colour_and_matches_the_masked_update(name):
    """The PyTorch red-black step of the GPU (stride-2 sub-lattices, the colour's nodes
    only) equals the masked update, which computes the residual everywhere."""
    op = _operators()[name]
    red, black = red_black(op)
    u, f = _data(op, torch.float64, seed=5)
    with torch.no_grad(), kernels.disabled():
        for B in (red, black):
            parity, scale = B.colour_step
            got = op.colour_update_(u.clone(), f, parity, scale)
            ref = op.masked_update_(u.clone(), f, B.scale)
            _close(got, ref, torch.float64)
            other = B.scale == 0
            assert torch.equal(got[..., other], u[..., other])
            # the same with the scale as a grid (variable coefficients)
            _close(op.colour_update_(u.clone(), f, parity, B.scale), ref, torch.float64)


def test_fused_hooks_are_offered_only_to_plain_linear_steps(monkeypatch):
    """The cycle hands a level's steps to R.smooth_restrict_ / P.add_to_smooth_ only when
    they are linear steps of the level's A; with sigma on one step, that level runs its
    steps one by one (and the result still equals the allocating cycle)."""
    from torch import nn

    prob = make_problem("poisson", 2, 63)
    solver = MultigridSolver(prob.A, device="cpu")
    calls = []
    for cls, name in ((FullWeighting, "smooth_restrict_"), (Interpolation, "add_to_smooth_")):
        original = getattr(cls, name)

        def spy(self, *a, _original=original, _name=name):
            calls.append((_name, self.fine_shape))
            return _original(self, *a)

        monkeypatch.setattr(cls, name, spy)
    f = prob.f.reshape(1, 1, 63, 63)
    x0 = torch.randn_like(f)
    with torch.no_grad():
        solver.cycle(f, x0.clone(), inplace=True)
        assert ("smooth_restrict_", (63, 63)) in calls and ("add_to_smooth_", (63, 63)) in calls
        calls.clear()
        solver.cycle.levels[0].pre[1].sigma_out = nn.Identity()
        fused = solver.cycle(f, x0.clone(), inplace=True)
        assert ("smooth_restrict_", (63, 63)) not in calls
        assert ("add_to_smooth_", (63, 63)) in calls  # the post-smoothing has no sigma
        assert ("smooth_restrict_", (31, 31)) in calls
        reference = solver.cycle(f, x0.clone())
    _close(fused, reference, torch.float64)


def test_gpu_paths_are_not_cut_into_cpu_cache_blocks():
    """On a device other than the CPU a residual is one pass over the whole grid (one
    kernel per stencil term); only the CPU cuts large grids into blocks of rows."""
    op = laplacian((301, 301))
    cpu = torch.empty(1, 1, 301, 301, dtype=torch.float64)
    meta = torch.empty(1, 1, 301, 301, dtype=torch.float64, device="meta")
    assert len(op._plan(cpu, cpu)) > 1
    assert len(op._plan(meta, meta)) == 1


TRANSFER = [n for n, op in _operators().items() if coarse_shape(op.shape, op.bc)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", TRANSFER)
def test_transfers_match_torch(name, dtype):
    op = _operators()[name].to(dtype)
    R, P = FullWeighting(op.shape, op.bc), Interpolation(op.shape, op.bc)
    u, f = _data(op, dtype, seed=3)
    g = torch.Generator().manual_seed(4)
    e = torch.randn(2, 1, *R.coarse_shape, generator=g, dtype=torch.float64).to(dtype)
    with torch.no_grad():
        got = [R(f), R.restrict_residual(op, u, f), P(e), P.add_to(u.clone(), e)]
        with kernels.disabled():
            ref = [R(f), R(op.residual(u, f)), P(e), P.add_to(u.clone(), e)]
    for a, b in zip(got, ref):
        _close(a, b, dtype)


def test_transfer_sizes_cover_every_case():
    """The parametrization above covers 1D, 2D and 3D, each with both boundaries."""
    ops = _operators()
    covered = {(ops[n].dim, ops[n].bc) for n in TRANSFER}
    assert covered == {(d, bc) for d in (1, 2, 3) for bc in ("dirichlet", "periodic")}


def test_autograd_cuda_and_strided_inputs_take_the_torch_path():
    op = laplacian((7, 9))
    u, f = _data(op, torch.float64)
    w = u.clone().requires_grad_(True)
    assert not op.compiled(w)  # grad mode on and a tensor that requires grad
    Aw = op(w)
    assert Aw.grad_fn is not None
    Aw.sum().backward()
    assert w.grad is not None
    with torch.no_grad():
        assert op.compiled(w, f)  # no graph is recorded
    t = torch.randn(2, 1, 9, 7, dtype=torch.float64).transpose(2, 3)
    assert not t.is_contiguous() and not op.compiled(t, f)
    _close(op.residual(t, f), op.residual(t.contiguous(), f), torch.float64)
    assert not op.compiled(u.to(torch.bfloat16), f.to(torch.bfloat16))
    assert not op.compiled(u, f[:1])  # shapes differ


@pytest.mark.parametrize("value,on", [("0", False), ("off", False), ("1", True), ("", True)])
def test_switch_by_environment_variable(monkeypatch, value, on):
    op = laplacian((7, 9))
    u, f = _data(op, torch.float64)
    monkeypatch.setenv("MGNET_KERNELS", value)
    try:
        importlib.reload(kernels)  # the variable is read when the module is imported
        assert kernels.ENABLED is on and kernels.enabled() is on
        assert op.compiled(u, f) is on
    finally:
        monkeypatch.delenv("MGNET_KERNELS")
        importlib.reload(kernels)
    assert kernels.ENABLED


def test_warm_up_reports_the_first_call():
    seconds = kernels.warm_up()
    assert kernels.compile_seconds() is not None
    assert seconds >= 0.0
    with kernels.disabled():
        assert not kernels.enabled()
    assert kernels.enabled()


@pytest.mark.parametrize("smoother", ["rbgs", "jacobi"])
@pytest.mark.parametrize("dim,n", [(2, 63), (3, 15)])
def test_solver_converges_the_same_with_and_without_kernels(smoother, dim, n):
    prob = make_problem("poisson", dim, n)
    hist = {}
    for on in (True, False):
        solver = MultigridSolver(prob.A, smoother=smoother, device="cpu")
        res: list[float] = []
        if on:
            solver.solve(prob.f, tol=1e-10, residuals=res)
        else:
            with kernels.disabled():
                solver.solve(prob.f, tol=1e-10, residuals=res)
        hist[on] = torch.tensor(res)
    assert len(hist[True]) == len(hist[False])
    # the same iteration up to rounding: differences far below the residuals themselves
    rel = (hist[True] - hist[False]).abs() / hist[False]
    assert float(rel[: len(rel) // 2].max()) < 1e-8
    assert float(((hist[True] - hist[False]).abs() / hist[False][0]).max()) < 1e-13
    factor = float((hist[True][-1] / hist[True][0]) ** (1 / (len(hist[True]) - 1)))
    assert factor < {("rbgs", 2): 0.15, ("rbgs", 3): 0.3}.get((smoother, dim), 0.5)


def test_two_threads_solve_side_by_side_as_each_alone():
    """The kernels release the GIL: two solvers in two threads must not share scratch (the
    taps of R and P, a coarse row), so each thread's iterates equal a solve alone."""
    import threading

    probs = [make_problem("poisson", 2, 127), make_problem("anisotropic", 2, 127)]
    solvers = [MultigridSolver(p.A, smoother="rbgs", device="cpu") for p in probs]
    alone = [s.solve(p.f, tol=1e-12, maxiter=12) for s, p in zip(solvers, probs, strict=True)]
    equal = [[], []]

    def run(i: int) -> None:
        for _ in range(25):
            x = solvers[i].solve(probs[i].f, tol=1e-12, maxiter=12)
            equal[i].append(torch.equal(x, alone[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert equal == [[True] * 25, [True] * 25]
