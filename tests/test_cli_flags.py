"""Every flag of `mgnet solve`, `mgnet inspect` and `mgnet demo` is passed here and checked
against what it changes: the printed figures, the written PNG, or the arguments the
handler hands to the package. (models and plot: tests/test_cli.py; train, eval, export:
their own test files.)"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

import mgnet.demo
import mgnet.multigrid as multigrid
from mgnet.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def run_json(argv, capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def png_width(path) -> int:
    data = path.read_bytes()
    assert data[:8] == PNG
    return struct.unpack(">I", data[16:20])[0]


@pytest.fixture
def solver_calls(monkeypatch):
    """Records what the handlers pass to MultigridSolver and to its solve/pcg/fmg."""
    calls: dict = {}
    real = multigrid.MultigridSolver

    class Spy(real):
        def __init__(self, A, **kwargs):
            calls["init"] = kwargs
            super().__init__(A, **kwargs)

        def solve(self, f, **kwargs):
            calls["solve"] = kwargs
            return super().solve(f, **kwargs)

        def pcg(self, f, **kwargs):
            calls["pcg"] = kwargs
            return super().pcg(f, **kwargs)

        def fmg(self, f, *args, **kwargs):
            calls["fmg"] = (args, kwargs)
            return super().fmg(f, *args, **kwargs)

    monkeypatch.setattr(multigrid, "MultigridSolver", Spy)
    return calls


# ------------------------------------------------------------------------------ solve
def test_solve_passes_every_flag_to_the_solver(solver_calls, monkeypatch, capsys):
    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    argv = ["solve", "--problem", "anisotropic", "--dim", "2", "--n", "31", "--cycle", "W",
            "--smoother", "chebyshev", "--nu", "3,1", "--coarse", "galerkin", "--tol", "1e-4",
            "--maxiter", "40", "--dtype", "float32", "--device", "cpu", "--threads", "1",
            "--json"]  # fmt: skip
    out = run_json(argv, capsys)
    assert solver_calls["init"] == {
        "smoother": "chebyshev",
        "nu": (3, 1),
        "coarse": "galerkin",
        "interpolation": "linear",
        "precision": "float32",
        "device": "cpu",
    }
    assert {k: solver_calls["solve"][k] for k in ("tol", "maxiter", "cycle")} == {
        "tol": 1e-4,
        "maxiter": 40,
        "cycle": "W",
    }
    assert threads == [1]
    assert (out["problem"], out["dim"], out["n"], out["unknowns"]) == ("anisotropic", 2, 31, 961)
    assert (out["cycle"], out["smoother"], out["nu"], out["dtype"], out["device"]) == (
        "W", "chebyshev", [3, 1], "float32", "cpu",
    )  # fmt: skip
    assert out["relative_residual"] <= 1e-4


def test_solve_interpolation_builds_p_from_the_operator(solver_calls, capsys):
    # a coefficient that jumps by 100: P built from A (with R A P coarse operators) keeps
    # PCG's iterations low where linear interpolation of rediscretized grids needs more
    base = ["solve", "--problem", "jump", "--n", "127", "--cycle", "pcg", "--tol", "1e-8"]
    linear = run_json([*base, "--json"], capsys)
    assert solver_calls["init"]["interpolation"] == "linear"
    assert (linear["coarse"], linear["interpolation"]) == ("rediscretize", "linear")
    operator = run_json([*base, "--interpolation", "operator", "--json"], capsys)
    assert solver_calls["init"]["interpolation"] == "operator"
    assert (operator["coarse"], operator["interpolation"]) == ("galerkin", "operator")
    assert operator["relative_residual"] <= 1e-8 and linear["relative_residual"] <= 1e-8
    assert operator["iterations"] <= 8 < 12 <= linear["iterations"]
    # it is built in 1D and 2D, and only with Galerkin coarse operators: one line, exit 2
    assert main([*base[:-2], "--dim", "3", "--n", "15", "--interpolation", "operator"]) == 2
    assert "'operator' is built in 1D and 2D" in capsys.readouterr().err
    assert main([*base, "--interpolation", "operator", "--coarse", "rediscretize"]) == 2
    assert "Galerkin" in capsys.readouterr().err


def test_solve_tol_and_maxiter_change_the_iterations(solver_calls, capsys):
    base = ["solve", "--n", "63", "--threads", "1", "--json"]
    loose = run_json([*base, "--tol", "1e-3"], capsys)
    tight = run_json([*base, "--tol", "1e-10"], capsys)
    assert loose["relative_residual"] <= 1e-3 < loose["residuals"][-2] / loose["residuals"][0]
    assert tight["relative_residual"] <= 1e-10
    assert loose["iterations"] < tight["iterations"]
    main([*base, "--tol", "1e-14", "--maxiter", "2"])  # not converged: exit status aside
    capsys.readouterr()
    assert solver_calls["solve"]["maxiter"] == 2


def test_solve_pcg_and_fmg_get_their_flags(solver_calls, capsys):
    out = run_json(["solve", "--n", "31", "--cycle", "pcg", "--tol", "1e-9", "--maxiter", "9",
                    "--json"], capsys)  # fmt: skip
    assert (solver_calls["pcg"]["tol"], solver_calls["pcg"]["maxiter"]) == (1e-9, 9)
    assert out["iterations"] == 8 and out["converged"]  # one short of --maxiter
    # one iteration fewer than it needs: not converged, and the exit status says so
    assert main(["solve", "--n", "31", "--cycle", "pcg", "--tol", "1e-9", "--maxiter", "7"]) == 1
    assert solver_calls["pcg"]["maxiter"] == 7 and "did not reach --tol" in capsys.readouterr().err
    out = run_json(["solve", "--n", "31", "--cycle", "fmg", "--dim", "1", "--json"], capsys)
    assert "fmg" in solver_calls and (out["iterations"], out["unknowns"]) == (1, 31)
    assert solver_calls["fmg"][1]["maxiter"] == 0  # one FMG pass unless --maxiter says more


def test_solve_text_output_and_plot(tmp_path, capsys):
    assert main(["solve", "--n", "31", "--plot", str(tmp_path / "s.png")]) == 0
    out = capsys.readouterr().out
    assert "poisson 2D, 961 unknowns, V-cycle: " in out and "iterations" in out
    assert f"saved {tmp_path / 's.png'}" in out and png_width(tmp_path / "s.png") == 1000


@pytest.mark.parametrize(
    "plot,message",
    [("folder.png", "--plot: "), ("missing/s.png", "does not exist"), ("s.svg", ".png")],
)
def test_solve_bad_plot_is_refused_before_solving(plot, message, solver_calls, tmp_path,
                                                  capsys):  # fmt: skip
    (tmp_path / "folder.png").mkdir()
    assert main(["solve", "--n", "31", "--plot", str(tmp_path / plot)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert "init" not in solver_calls  # nothing was set up


# ---------------------------------------------------------------------------- inspect
def test_inspect_solver_flags_are_the_library_call(tmp_path, capsys):
    from mgnet.multigrid import MultigridSolver, make_problem
    from mgnet.visualize import inspect_solver

    def argv(seed: int = 5, cycle: str = "W") -> list[str]:
        return ["inspect", "--solver", "--problem", "diffusion", "--dim", "1", "--n", "31",
                "--smoother", "rbgs", "--nu", "3", "--cycle", cycle, "--seed", str(seed),
                "--out", str(tmp_path / f"{cycle}{seed}.png"), "--json"]  # fmt: skip

    got = run_json(argv(), capsys)
    prob = make_problem("diffusion", 1, 31)
    solver = MultigridSolver(prob.A, smoother="rbgs", nu=(3, 3), device="cpu")
    x0 = torch.rand(31, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    want = inspect_solver(solver, prob.f, x0=x0, cycle="W")
    assert got["events"] == want.events and got["corrections"] == want.corrections
    assert got["levels"] == len(solver.levels) and got["out"] == str(tmp_path / "W5.png")
    # another seed is another initial guess; a V-cycle visits the coarse grids once
    other = run_json(argv(seed=6), capsys)
    assert other["corrections"] != got["corrections"]
    v = run_json(argv(cycle="V"), capsys)
    assert len(v["events"]) < len(got["events"])


def test_inspect_solver_text_output(tmp_path, capsys):
    assert main(["inspect", "--solver", "--n", "15", "--out", str(tmp_path / "v.png")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("poisson 2D n=15, one V-cycle (jacobi, nu=(2, 2))")
    assert out.rstrip().endswith(f"saved {tmp_path / 'v.png'}")


@pytest.fixture
def digits_checkpoint(tmp_path):
    from mgnet.models import create_model

    torch.manual_seed(0)
    model = create_model("mgnet_digits").eval()
    path = tmp_path / "ck.pt"
    torch.save({"model": model.state_dict(), "config": {"model": "mgnet_digits",
                "data": "digits"}}, path)  # fmt: skip
    return model, path


def test_inspect_checkpoint_image_and_channels(digits_checkpoint, tmp_path, capsys):
    from mgnet.visualize import load_image

    model, ck = digits_checkpoint
    image = tmp_path / "x.npy"
    np.save(image, np.random.default_rng(0).random((8, 8)).astype(np.float32))
    argv = ["inspect", "--checkpoint", str(ck), "--image", str(image), "--json"]
    wide = run_json([*argv, "--channels", "2", "--out", str(tmp_path / "2.png")], capsys)
    with torch.no_grad():
        expected = int(model(load_image(image, 1, 8)).argmax())
    assert wide["prediction"] == expected and wide["label"] is None
    narrow = run_json([*argv, "--channels", "1", "--out", str(tmp_path / "1.png")], capsys)
    assert png_width(tmp_path / "1.png") < png_width(tmp_path / "2.png")
    assert narrow["events"] == wide["events"]
    # --model overrides the checkpoint's own name (a bare state dict needs it)
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    bare = run_json(["inspect", "--checkpoint", str(tmp_path / "bare.pt"), "--model",
                     "mgnet_digits", "--image", str(image), "--out",
                     str(tmp_path / "b.png"), "--json"], capsys)  # fmt: skip
    assert bare["prediction"] == expected


def test_inspect_data_data_dir_and_index(monkeypatch, tmp_path, capsys):
    import mgnet.data

    seen = []
    real = mgnet.data.get_dataset

    def spy(name, root=None, **kwargs):
        seen.append((name, root))
        return real(name, root=root, **kwargs)

    monkeypatch.setattr(mgnet.data, "get_dataset", spy)
    got = run_json(["inspect", "--model", "mgnet_digits", "--data", "digits", "--data-dir",
                    str(tmp_path), "--index", "7", "--out", str(tmp_path / "d.png"),
                    "--json"], capsys)  # fmt: skip
    assert seen == [("digits", str(tmp_path))]
    assert got["label"] == int(real("digits", augment=False).test[7][1])


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("junk.pt", b"hello, not a tensor file", "cannot read"),
        ("dict.pt", {"a": torch.zeros(2)}, "holds a dict, not a tensor"),
        ("text.npy", np.array(["a", "b"]), "not of numbers"),
        ("junk.npy", b"\x93NUMPY garbage", "cannot read"),
        ("junk.png", b"\x89PNG\r\n\x1a\n broken", "cannot read"),
        ("nan.npy", np.full((8, 8), np.nan), "NaN or infinite"),
        ("empty.npy", np.zeros((0, 8)), "empty"),
        ("image.gif", b"GIF89a", "is not a .png, .jpg, .npy or .pt file"),
    ],
)
def test_inspect_image_that_is_not_an_image_is_one_line(name, content, message, tmp_path,
                                                        capsys):  # fmt: skip
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, np.ndarray):
        with open(path, "wb") as fh:
            np.save(fh, content)
    else:
        torch.save(content, path)
    argv = ["inspect", "--model", "mgnet_digits", "--image", str(path), "--out",
            str(tmp_path / "i.png")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_inspect_out_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "o.png").mkdir()
    assert main(["inspect", "--solver", "--n", "15", "--out", str(tmp_path / "o.png")]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_inspect_checkpoint_without_config_is_one_line(digits_checkpoint, tmp_path, capsys):
    model, _ = digits_checkpoint
    torch.save({"model": model.state_dict()}, tmp_path / "noconfig.pt")
    assert main(["inspect", "--checkpoint", str(tmp_path / "noconfig.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "names no model" in err and "\n" not in err


# ------------------------------------------------------------------------------- demo
def test_demo_passes_every_flag(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(mgnet.demo, "run_demo", lambda **kw: calls.append(kw))
    assert main(["demo"]) == 0
    argv = ["demo", "--epochs", "2", "--baseline", "plain_cnn", "--seed", "3", "--device",
            "cpu", "--threads", "2", "-o", str(tmp_path), "--poisson-n", "63"]  # fmt: skip
    assert main(argv) == 0
    defaults = dict(epochs=None, baseline="preact_resnet18", seed=0, device="auto", threads=1,
                    output_dir=None, poisson_n=1023)  # fmt: skip
    given = dict(epochs=2, baseline="plain_cnn", seed=3, device="cpu", threads=2,
                 output_dir=str(tmp_path), poisson_n=63)  # fmt: skip
    assert calls == [defaults, given]


def test_demo_poisson_is_the_multigrid_part(capsys):
    from mgnet.demo import demo_poisson

    out = demo_poisson(n=63)
    printed = capsys.readouterr().out
    assert out["unknowns"] == 63 * 63 and out["iterations"] <= 10 and out["factor"] < 0.15
    assert f"{out['iterations']:>3} cycles, factor {out['factor']:.3f}" in printed
