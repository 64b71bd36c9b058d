"""The structure issue 9 asked for, where no other file checks it: every fused hook of the
core has an implementation that follows its protocol, plots leave matplotlib's global state
alone, the package ships its data and ``py.typed``, the renamed and folded modules are gone,
and ``mgnet solve`` checks its shared flags the same way on grids and on matrices."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from mgnet.cli import main

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
}


# ------------------------------------------------------------------- core protocols
def test_every_hook_of_the_core_has_an_implementation_that_follows_its_protocol():
    from mgnet.core import protocols as hooks
    from mgnet.multigrid.sparse import SparseMatrix
    from mgnet.stencils import FullWeighting, Interpolation, Jacobi, StencilOperator

    assert issubclass(FullWeighting, hooks.FusedRestriction)
    assert issubclass(FullWeighting, hooks.FusedSmoothingRestriction)
    assert issubclass(Interpolation, hooks.FusedCorrectionSmoothing)
    assert issubclass(Interpolation, hooks.InPlaceProlongation)
    assert issubclass(StencilOperator, hooks.FusedResidual)
    assert issubclass(Jacobi, hooks.InPlaceSmoother)
    assert issubclass(SparseMatrix, hooks.FusedResidual)
    assert issubclass(SparseMatrix, hooks.InPlaceProlongation)
    # the protocols are narrow: a convolution offers none of them
    for proto in (
        hooks.FusedRestriction,
        hooks.FusedSmoothingRestriction,
        hooks.FusedCorrectionSmoothing,
    ):
        assert not issubclass(torch.nn.Conv2d, proto)


def test_the_fused_restriction_equals_restricting_the_residual():
    """R.restrict_residual(A, u, f) is R(residual(A, u, f)): the guarantee the cycle uses."""
    from mgnet.core import residual
    from mgnet.stencils import FullWeighting, laplacian

    A = laplacian(31, dim=2)
    R = FullWeighting((31, 31))
    g = torch.Generator().manual_seed(0)
    u = torch.rand(2, 1, 31, 31, generator=g, dtype=torch.float64)
    f = torch.rand(2, 1, 31, 31, generator=g, dtype=torch.float64)
    u0, f0 = u.clone(), f.clone()
    fused = R.restrict_residual(A, u, f)
    plain = R((f - A(u)).clone())
    assert torch.allclose(fused, plain, rtol=1e-12, atol=1e-12)
    assert torch.equal(u, u0) and torch.equal(f, f0)  # neither input is written
    assert torch.allclose(R.restrict_residual(A, None, f), R(residual(A, None, f)))


# ---------------------------------------------------------------------------- plots
def test_plots_leave_matplotlibs_global_backend_and_pyplot_alone(tmp_path):
    pytest.importorskip("matplotlib")
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "from mgnet.plotting import figure, save_png\n"
        "from mgnet.curves import plot_curves\n"
        "fig = figure(3, 2)\n"
        "fig.subplots().plot([0, 1], [1, 0])\n"
        f"save_png(fig, {str(tmp_path / 'a.png')!r})\n"
        f"plot_curves({str(tmp_path)!r}, {str(tmp_path / 'c.png')!r})\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"epoch": 1, "train_loss": 1.0, "val_accuracy": 50.0, "lr": 0.1}) + "\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["svg", "False"]
    for name in ("a.png", "c.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# ------------------------------------------------------------------------ packaging
def _package_data() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib")
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]["package-data"]


def test_package_data_names_files_that_exist():
    data = _package_data()
    assert "py.typed" in data["mgnet"] and "configs/*.yaml" in data["mgnet"]
    assert {"digits.npz", "DIGITS_LICENSE.txt"} <= set(data["mgnet.data"])
    for package, patterns in data.items():
        folder = ROOT / "src" / Path(*package.split("."))
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches no file"
    recipes = {p.stem for p in (ROOT / "src" / "mgnet" / "configs").glob("*.yaml")}
    assert {"cifar10_mgnet_paper", "cifar100_mgnet_paper", "imagenet_mgnet_paper"} <= recipes


def test_the_wheel_ships_py_typed_the_recipes_and_the_digits(tmp_path):
    pytest.importorskip("setuptools")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src" / "mgnet", tmp_path / "src" / "mgnet", ignore=ignore)
    out = tmp_path / "wheel"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"mgnet/py.typed", "mgnet/configs/cifar10_mgnet_paper.yaml",
            "mgnet/data/digits.npz", "mgnet/data/DIGITS_LICENSE.txt"} <= names  # fmt: skip


# -------------------------------------------------------------------- one home each
def test_renamed_and_folded_modules_are_gone():
    # mgnet/inspect.py shadowed the standard library; the second demo was folded in
    assert importlib.util.find_spec("mgnet.inspect") is None
    assert importlib.util.find_spec("mgnet.multigrid.demo") is None
    assert importlib.util.find_spec("mgnet.cli.inspect_") is not None
    assert not (ROOT / "src" / "mgnet" / "cli.py").exists()  # the command is a package


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--maxiter", "-1"], "--maxiter: must be >= 0, got -1"),
        (["--tol", "0"], "--tol: must be positive, got 0.0"),
        (["--threads", "-2"], "--threads: must be 0 (torch's choice) or positive, got -2"),
    ],
)
@pytest.mark.parametrize("problem", [["--problem", "poisson"], ["--problem", "darcy"]])
def test_solve_checks_its_shared_flags_alike_on_grids_and_matrices(
    problem, extra, message, capsys, monkeypatch
):
    """One check for both paths, before any set-up is built."""
    import mgnet.multigrid as mg

    def no_setup(*args, **kwargs):
        raise AssertionError("a set-up was built before the flags were checked")

    monkeypatch.setattr(mg, "MultigridSolver", no_setup)
    monkeypatch.setattr(mg, "smoothed_aggregation_solver", no_setup)
    assert main(["solve", *problem, "--n", "15", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mgnet solve: error: {message}"


def test_solve_reports_a_matrix_that_was_not_solved_like_a_grid(capsys):
    for argv in (["--problem", "poisson"], ["--problem", "rotated-anisotropy"]):
        assert main(["solve", *argv, "--n", "63", "--maxiter", "1", "--tol", "1e-12"]) == 1
        out, err = capsys.readouterr()
        assert err.startswith("mgnet solve: did not reach --tol 1e-12 (maxiter after 1 iter")
        assert "1 iterations, relative residual" in out and "mean factor" in out


def test_counting_on_the_meta_device_does_not_import_dynamo():
    """``mgnet models`` builds every model on the meta device; where a model's own code
    fills values there (an init, a scaled random tensor), torch runs Python reference
    kernels whose first call imports torch._dynamo, seconds of start-up. Only
    torchvision's resnet18 may pull it in (torchvision imports it itself)."""
    code = (
        "import sys\n"
        "from mgnet.models import count_parameters_of, list_models\n"
        "counts = {n: count_parameters_of(n) for n in list_models() if n != 'resnet18'}\n"
        "print(len(counts), 'torch._dynamo' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, dynamo = proc.stdout.split()
    assert int(count) >= 14 and dynamo == "False"


def test_every_command_turns_a_checkpoint_into_its_model_through_the_one_loader(
    tmp_path, monkeypatch, capsys
):
    """train --test-only, eval, export and inspect all rebuild the model in
    mgnet.train.loading (issue 9: one checkpoint-to-model loader, not four)."""
    import mgnet.train.loading as loading
    from mgnet.train import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(model="mgnet[1,1]-8", epochs=1, batch_size=128, threads=1,
                      progress=False, output_dir=str(run)))  # fmt: skip
    loaded = []
    real_fit = loading._fit

    def spy(net, weights, path, name):
        loaded.append(path.name)
        return real_fit(net, weights, path, name)

    monkeypatch.setattr(loading, "_fit", spy)
    best = str(run / "best.pt")
    commands = {
        "train": ["train", "--resume", str(run), "--test-only"],
        "eval": ["eval", "--checkpoint", best, "-o", str(tmp_path / "e.json"), "--no-plot"],
        "export": ["export", "--checkpoint", best, "--format", "torchscript", "--no-check",
                   "-o", str(tmp_path / "m.torchscript.pt")],
        "inspect": ["inspect", "--checkpoint", best, "--out", str(tmp_path / "i.png")],
    }  # fmt: skip
    for command, argv in commands.items():
        before = len(loaded)
        assert main(argv) == 0, (command, capsys.readouterr().err)
        assert len(loaded) == before + 1, command
    assert set(loaded) <= {"best.pt", "checkpoint.pt"}


def test_an_error_without_a_message_is_still_one_line():
    """The first-line rule lives in mgnet.errors.first_line; a copy in the trainer indexed
    the first line of an empty message and raised IndexError instead of the one line."""
    from torch import nn

    from mgnet.train.loop import _check_forward

    class Silent(nn.Module):
        def forward(self, x):
            raise RuntimeError()

    loader = [(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(ValueError, match=r"^model: 'silent' cannot take .* \(RuntimeError\)$"):
        _check_forward(Silent(), loader, torch.device("cpu"), "silent")


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "darcy", "--resolution", "33", "--train", "1", "--test", "1"],
        ["learn-smoother", "--problem", "poisson", "--n", "15"],
    ],
)
def test_threads_are_checked_by_one_rule(argv, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main([*argv, "-o", out, "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mgnet {argv[0]}: error: --threads: must be >= 1, got 0"
    assert not (tmp_path / "out").exists()  # refused before any work
