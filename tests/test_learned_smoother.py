"""Learned smoothers (mgnet.multigrid.learned): gradients through the solver's cycle,
training that lowers the factor, save/load, the protocol, and bad input."""

import math

import pytest
import torch
from torch import nn

from mgnet.cli import main
from mgnet.multigrid import (
    LearnedSmoother,
    MultigridSolver,
    asymptotic_factor,
    learn_smoother,
    make_problem,
)
from mgnet.multigrid.learned import ConvolutionSmoother, smoother_problem
from mgnet.stencils import anisotropic, diffusion, laplacian


def _solver(A, smoother, **kw):
    return MultigridSolver(A, smoother=smoother, device="cpu", **kw)


def test_gradcheck_through_the_cycle():
    """d(one V-cycle)/d(kernels) and d/d(initial error), in float64 on a 7 x 7 grid: the
    learned convolution, the residual, R, P and the coarse solve are all differentiated."""
    A = anisotropic((7, 7), (1, 0.3))
    learned = LearnedSmoother(2, (3, 3), nu=2).train()
    with torch.no_grad():
        for k in learned.kernels:
            k.add_(0.1 * torch.randn(3, 3, dtype=torch.float64))
    solver = _solver(A, learned)
    f = torch.zeros(1, 1, 7, 7, dtype=torch.float64)
    e0 = torch.randn(1, 1, 7, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 1, 7, 7, dtype=torch.float64)

    def one_cycle(k0, k1, e):  # the kernels enter through the solver's steps
        return (solver.cycle(f, e) * w).sum()

    assert torch.autograd.gradcheck(one_cycle, (*learned.kernels, e0), atol=1e-8, fast_mode=True)


def test_the_learned_step_is_the_same_with_and_without_autograd():
    """conv2d (training) == one multiply-add per tap (solving) == the fused in-place step,
    also with variable coefficients (D^-1 a tensor) and a kernel wider than the grid."""
    torch.manual_seed(0)
    for A, k in [
        (anisotropic((9, 5), (1, 0.1)), (7, 3)),
        (diffusion((7, 7), lambda x, y: 1 + 99.0 * (x > 0.5)), (5, 5)),
        (anisotropic((3, 3), (1, 0.1)), (7, 3)),
    ]:
        K = nn.Parameter(torch.randn(*k, dtype=torch.float64))
        B = ConvolutionSmoother(A, K)
        r = torch.randn(2, 1, *A.shape, dtype=torch.float64)
        trained = B(r)
        assert trained.requires_grad
        with torch.no_grad():
            solving = B(r)
            u = torch.randn_like(r)
            fused = B.update_(A, u.clone(), r)
            expected = u + B(r - A(u))
        assert torch.allclose(trained, solving, atol=1e-12)
        assert torch.allclose(fused, expected, atol=1e-12)


def test_a_short_training_lowers_the_factor():
    """A few seconds of Adam through the cycle: anisotropic eps = 0.1 on 31 x 31, 7x3
    kernels; the asymptotic factor (power iteration) drops well below damped Jacobi's."""
    learned = learn_smoother(
        "anisotropic", eps=0.1, n=31, kernel="7x3", nu=2, steps=25, cycles=3, batch=4, lr=0.03
    )
    log = learned.training_log
    assert log["factor_jacobi"] > 0.7  # damped Jacobi V(2,2): about 0.73
    assert log["factor"] < 0.35
    assert log["factor"] < 0.5 * log["factor_jacobi"]
    # measured again, independently, on a grid it never saw
    A = smoother_problem("anisotropic", 63, 2, 0.1)
    assert asymptotic_factor(_solver(A, learned)) < 0.4


def test_save_load_round_trip(tmp_path):
    learned = learn_smoother("poisson", n=15, kernel=3, nu=2, sharing="level", steps=3, batch=2)
    assert learned.sets == 3  # 15 -> 7 -> 3 -> 1: three levels above the coarsest
    path = learned.save(tmp_path / "poisson.pt")
    state = torch.load(path, weights_only=True)
    assert state["format"] == "mgnet-learned-smoother" and state["kernel"] == [3, 3]
    back = LearnedSmoother.load(path, dim=2, kernel=3)
    assert torch.equal(back.weight, learned.weight)
    assert (back.dim, back.kernel_shape, back.nu, back.sharing) == (2, (3, 3), 2, "level")
    assert back.problem == learned.problem == {"name": "poisson", "eps": None, "n": 15, "dim": 2}
    assert back.training_log == learned.training_log
    A = smoother_problem("poisson", 31, 2)
    assert asymptotic_factor(_solver(A, back)) == asymptotic_factor(_solver(A, learned))


def test_kernel_sets_are_counted_from_the_coarsest_grid():
    learned = LearnedSmoother(2, 3, nu=1, sharing="level", sets=5)  # trained at 63 x 63
    sets = [learned.kernel_set((n, n)) for n in (1023, 127, 63, 31, 15, 7, 3)]
    assert sets == [0, 0, 0, 1, 2, 3, 4]
    assert LearnedSmoother(2, 3, nu=1).kernel_set((1023, 1023)) == 0


def test_eval_mode_copies_and_train_mode_shares_the_kernels():
    learned = LearnedSmoother(2, 3, nu=1)
    A = anisotropic((7, 7), (1, 0.1))
    solver = MultigridSolver(A, smoother=learned, precision="float32", device="cpu")
    assert learned.kernels[0].dtype == torch.float64  # the solver's cast left it alone
    assert solver.levels[0].presmoother[0].kernel.dtype == torch.float32
    learned.train()
    assert learned(A, 0)[0].kernel is learned.kernels[0]


def test_bad_inputs(tmp_path):
    learned = LearnedSmoother(2, 3, nu=1)
    path = learned.save(tmp_path / "s.pt")
    with pytest.raises(ValueError, match="trained for 2D problems, not 3D"):
        LearnedSmoother.load(path, dim=3)
    with pytest.raises(ValueError, match="has 3x3 kernels, not 5x5"):
        LearnedSmoother.load(path, kernel=5)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="is not a learned smoother"):
        LearnedSmoother.load(text)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="is not a learned smoother"):
        LearnedSmoother.load(other)
    state = learned.state()
    state["weight"] = torch.zeros(1, 1, 5, 5)
    torch.save(state, tmp_path / "damaged.pt")
    with pytest.raises(ValueError, match="is damaged"):
        LearnedSmoother.load(tmp_path / "damaged.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        LearnedSmoother.load(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="zero-padded"):
        MultigridSolver(laplacian((16, 16), bc="periodic"), smoother=learned)
    with pytest.raises(ValueError, match="trained for 2D grids"):
        MultigridSolver(anisotropic((7, 7, 7), (1, 0.1, 0.1)), smoother=learned)
    with pytest.raises(ValueError, match="kernel: need one odd size"):
        LearnedSmoother(2, 4)
    with pytest.raises(ValueError, match="kernel"):
        LearnedSmoother(2, "7x3x3")
    with pytest.raises(ValueError, match="sharing"):
        LearnedSmoother(2, 3, sharing="colour")
    with pytest.raises(ValueError, match="eps"):
        learn_smoother("anisotropic", eps=0.0, n=7, steps=1)
    with pytest.raises(ValueError, match="problem"):
        learn_smoother("nonlinear", n=7, steps=1)


def test_a_divergent_smoother_is_reported_never_returned_as_a_solution(tmp_path, capsys):
    learned = LearnedSmoother(2, 3, nu=1)
    learned.weight = 3.0 * learned.weight / learned.weight.abs().max()  # 3 D^-1: unstable
    path = learned.save(tmp_path / "bad.pt")
    prob = make_problem("poisson", 2, 31)
    solver = _solver(prob.A, learned)
    assert asymptotic_factor(solver) > 1
    solver.solve(prob.f, maxiter=50)
    assert not solver.converged and solver.reason == "diverged"
    code = main(["solve", "--n", "31", "--smoother", str(path), "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "diverges on this problem" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["solve", "--problem", "anisotropic", "--eps", "0"], "--eps: the anisotropy must be"),
        (["solve", "--problem", "anisotropic", "--eps", "-1"], "--eps: the anisotropy must be"),
        (["solve", "--problem", "poisson", "--eps", "0.1"], "--eps: only --problem anisotropic"),
        (["solve", "--smoother", "sor"], "--smoother: 'sor' is not one of"),
        (["learn-smoother", "--eps", "0", "-o", "x.pt"], "--eps: the anisotropy must be"),
        (["learn-smoother", "--kernel", "4", "-o", "x.pt"], "--kernel: need one odd size"),
    ],
)
def test_cli_bad_values_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_cli_refuses_smoother_files_that_do_not_fit(tmp_path, capsys):
    LearnedSmoother(3, 3, nu=1).save(tmp_path / "3d.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a torch file")
    state = LearnedSmoother(2, 3, nu=1).state()
    state["kernel"] = [5, 5]  # says 5x5, holds 3x3 weights
    torch.save(state, tmp_path / "kernel.pt")
    for name, message in [
        ("3d.pt", "was trained for 3D problems, not 2D"),
        ("junk.pt", "is not a learned smoother"),
        ("kernel.pt", "expected shape (1, 1, 5, 5), got (1, 1, 3, 3)"),
    ]:
        code = main(["solve", "--n", "15", "--smoother", str(tmp_path / name)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_cli_learn_then_solve(tmp_path, capsys):
    out = tmp_path / "aniso.pt"
    argv = ["learn-smoother", "--eps", "0.1", "--n", "15", "--steps", "3", "--batch", "2"]
    assert main([*argv, "--eval-n", "31", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "asymptotic factor per V-cycle at n=15" in printed and "n=31: learned" in printed
    learned = LearnedSmoother.load(out)
    assert learned.problem == {"name": "anisotropic", "eps": 0.1, "n": 15, "dim": 2}
    assert set(learned.training_log["eval"]["31"]) == {"learned", "rbgs"}
    code = main(
        [
            "solve",
            "--problem",
            "anisotropic",
            "--eps",
            "0.1",
            "--n",
            "31",
            "--smoother",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    assert '"converged": true' in capsys.readouterr().out


def test_zebra_line_gauss_seidel_is_a_smoother_option():
    """Lines along the strong axis make the V-cycle robust in the anisotropy, where
    red-black Gauss-Seidel stalls (power iteration, 31 x 31)."""
    for eps in (0.1, 0.01):
        A = smoother_problem("anisotropic", 31, 2, eps)
        line = asymptotic_factor(_solver(A, "line"), iterations=30, tail=5)
        rbgs = asymptotic_factor(_solver(A, "rbgs"), iterations=30, tail=5)
        assert line < 0.12 and rbgs > 0.65, (eps, line, rbgs)
    poisson = _solver(smoother_problem("poisson", 31, 2), "line")
    assert math.isclose(asymptotic_factor(poisson, iterations=30, tail=5), 0.066, abs_tol=0.02)


def test_benchmark_quick_mode_prints_the_table(capsys):
    """benchmarks/learned_smoother.py --quick: every problem and smoother, one table."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "learned_smoother.py"
    spec = importlib.util.spec_from_file_location("learned_smoother_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        rows = bench.main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    assert len(rows) == 4 * 3
    assert {r["smoother"].split()[0] for r in rows} == {"rbgs", "line", "learned"}
    assert all(r["x_time"] == 1.0 for r in rows if r["smoother"] == "rbgs")
    assert all(0 < r["factor"] < 1 and r["seconds"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert printed.count("learned 11x3x3") == 2 and "digit x rbgs" in printed
