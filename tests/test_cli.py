"""The `mgnet` command as a tool: `python -m mgnet`, `--version`, `--help` without torch,
the error policy (one line and exit 2 for what a user got wrong, a traceback for a defect,
`--debug`), recipes by name, and the commands this file owns: `mgnet models` and
`mgnet plot`. (Every flag of solve, inspect and demo: tests/test_cli_flags.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mgnet
import mgnet.cli.models as cli_models
from mgnet.cli import SUBCOMMANDS, build_parser, main
from mgnet.errors import DivergenceError, DownloadError, MgNetError, MissingDependency
from mgnet.train.config import list_recipes, load_recipe

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
}
PNG = b"\x89PNG\r\n\x1a\n"


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` (outside the repository), on this checkout's sources."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[:2000]
    assert lines[0].startswith(f"mgnet {command}: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------- version, help, -m
def test_version_is_the_one_in_pyproject(tmp_path):
    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert mgnet.__version__ == declared.group(1)
    for module in ("mgnet", "mgnet.cli"):
        proc = python("-m", module, "--version", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"mgnet {declared.group(1)}\n"


def test_help_and_version_do_not_import_torch(tmp_path):
    code = """
import contextlib, io, sys
from mgnet.cli import build_parser
parser = build_parser()
names = list(next(a for a in parser._actions if a.dest == "command").choices)
for argv in [["--help"], ["--version"]] + [[n, "--help"] for n in names]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit as e:
            assert e.code == 0, argv
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "matplotlib"))
print(len(names), heavy)
"""
    proc = python("-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(maxsplit=1) == [str(len(SUBCOMMANDS)), "[]\n"]


def test_python_m_mgnet_runs_a_command(tmp_path):
    proc = python("-m", "mgnet", "solve", "--n", "15", "--threads", "1", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["unknowns"] == 225 and out["relative_residual"] <= 1e-8


def test_every_subcommand_module_has_add_parser_and_run():
    import importlib

    parser = build_parser()
    names = set(next(a for a in parser._actions if a.dest == "command").choices)
    expected = {"models", "solve", "learn-smoother", "inspect", "export", "train", "demo"}
    expected |= {"eval", "plot", "data"}
    assert names == expected
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"mgnet.cli.{name}")
        assert callable(module.add_parser) and callable(module.run)


# ----------------------------------------------------------------------- error policy
@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value\nsecond line"),
        TypeError("wrong type"),
        FileNotFoundError(2, "No such file or directory", "x.pt"),
        PermissionError(13, "Permission denied", "runs/x"),
        IsADirectoryError(21, "Is a directory", "out"),
        DivergenceError("solve: the residual became inf"),
        DownloadError("download: fetching CIFAR-10 failed"),
        MissingDependency("drawing needs matplotlib"),
        MgNetError("anything the package raises as its own"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_user_errors_are_one_line_with_exit_2(error, capsys, monkeypatch):
    def run(args):
        raise error

    monkeypatch.setattr(cli_models, "run", run)
    assert main(["models"]) == 2
    line = one_line_error(capsys, "models")
    assert str(error).splitlines()[0] in line


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        torch.OutOfMemoryError("CUDA out of memory"),
        KeyError("weights"),
        AssertionError("a broken invariant"),
        ZeroDivisionError("division by zero"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_internal_errors_keep_their_traceback(error, monkeypatch):
    """A RuntimeError from torch is a defect or a resource problem, not bad input: it is
    not turned into one line (the broad `except RuntimeError` hid CUDA OOM)."""

    def run(args):
        raise error

    monkeypatch.setattr(cli_models, "run", run)
    with pytest.raises(type(error)):
        main(["models"])


@pytest.mark.parametrize(
    "argv,env",
    [(["--debug", "models"], None), (["models", "--debug"], None), (["models"], "1")],
)
def test_debug_shows_the_traceback_of_user_errors_too(argv, env, monkeypatch):
    def run(args):
        assert not hasattr(args, "debug")  # never reaches a handler (train reads all args)
        raise ValueError("bad value")

    monkeypatch.setattr(cli_models, "run", run)
    if env is not None:
        monkeypatch.setenv("MGNET_DEBUG", env)
    with pytest.raises(ValueError, match="bad value"):
        main(argv)


def test_mgnet_debug_0_is_off(monkeypatch, capsys):
    monkeypatch.setattr(cli_models, "run", lambda args: int("x"))
    monkeypatch.setenv("MGNET_DEBUG", "0")
    assert main(["models"]) == 2
    assert "invalid literal" in one_line_error(capsys, "models")


def test_interrupt_long_message_and_closed_pipe(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_models, "run", interrupted)
    assert main(["models"]) == 130
    assert capsys.readouterr().err == "mgnet: interrupted\n"

    def long(args):
        raise ValueError("model: unknown model " + "x" * 100_000)

    monkeypatch.setattr(cli_models, "run", long)
    assert main(["models"]) == 2
    assert len(one_line_error(capsys, "models")) < 600

    def pipe(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli_models, "run", pipe)
    stdout = sys.stdout
    try:
        assert main(["models"]) == 141
    finally:
        sys.stdout = stdout
    assert capsys.readouterr().err == ""


TINY = ["--model", "mgnet[1,1]-8", "-b", "128", "--threads", "1", "--no-progress"]


def test_output_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["train", *TINY, "--epochs", "1", "-o", str(tmp_path / "file")]) == 2
    assert "file" in one_line_error(capsys, "train")


@pytest.mark.parametrize("where", ["output folder", "working directory"])
def test_folders_without_write_permission_are_one_line(where, tmp_path, capsys, monkeypatch):
    """-o in a folder without write permission, or the default runs/train/... under a
    read-only working directory (mkdir made to fail as it does there: root ignores
    permission bits, so chmod alone would not)."""

    def mkdir(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    out = ["-o", str(tmp_path / "locked" / "run")] if where == "output folder" else []
    assert main(["train", *TINY, "--epochs", "1", *out]) == 2
    assert "Permission denied" in one_line_error(capsys, "train")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_working_directory_for_real(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    monkeypatch.chdir(locked)
    try:
        assert main(["train", *TINY, "--epochs", "1"]) == 2
    finally:
        locked.chmod(0o700)
    assert "Permission denied" in one_line_error(capsys, "train")


# --------------------------------------------------------------------- recipes by name
def test_recipe_by_name_from_outside_the_repository(tmp_path):
    code = (
        "import json; from mgnet.train.config import list_recipes, load_recipe; "
        "print(json.dumps([list_recipes(), load_recipe('cifar10_mgnet_paper'), "
        "load_recipe('imagenet_mgnet_paper.yaml')['data']]))"
    )
    proc = python("-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names, paper, data = json.loads(proc.stdout)
    assert set(names) >= {"cifar10_mgnet_paper", "cifar100_mgnet_paper", "cifar10_fast",
                          "imagenet_mgnet_paper"}  # fmt: skip
    assert (paper["model"], paper["lr"], paper["lr_step_size"], paper["epochs"]) == (
        "mgnet_cifar", 0.1, 50, 300,
    )  # fmt: skip
    assert data == "imagefolder"


def test_train_with_a_recipe_name_from_another_folder(tmp_path, monkeypatch):
    from test_data_vision import write_cifar  # tests/ is on sys.path (pytest prepend mode)

    write_cifar(tmp_path / "data", "cifar10", n_train=4, n_test=4)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "-c", "cifar10_mgnet_paper", "--data-dir", "data", "--epochs", "1",
            "--model", "mgnet[1,1]-8", "-b", "8", "-o", "run", "--threads", "1",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["data"], saved["lr_step_size"], saved["lr_gamma"]) == ("cifar10", 50, 0.1)


def test_a_file_in_the_current_folder_comes_before_a_packaged_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar10_fast.yaml").write_text("epochs: 3\n")
    assert load_recipe("cifar10_fast.yaml") == {"epochs": 3}
    assert load_recipe("cifar10_fast")["data"] == "cifar10"  # no such file: the packaged one
    with pytest.raises(FileNotFoundError, match="packaged: .*cifar10_mgnet_paper"):
        load_recipe("./cifar10_mgnet_paper")  # a path is never redirected to the package


def alias_bomb() -> str:
    """A 352-byte YAML whose nested aliases expand to 9^9 strings (it made an 80 MB line)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join([*lines, "model: *i"]) + "\n"


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("bomb.yaml", alias_bomb(), "expands to more than 10,000 values"),
        ("loop.yaml", "model: &x [*x]\n", "expands to more than 10,000 values"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "nests too deeply"),
        ("deep.yaml", "a: " + "[" * 100_000 + "]" * 100_000, "nests too deeply"),
        ("big.yaml", "# " + "x" * (1 << 20) + "\n", "larger than 1,048,576 bytes"),
        ("latin1.yaml", b"model: caf\xe9\n", "is not UTF-8 text"),
        ("keys.yaml", "1: 2\n", "has the key 1; keys are field names"),
        ("list.yaml", "- 1\n", "must hold a mapping"),
        ("bad.json", "{" + "x" * 5000, "is not valid JSON"),
        ("bad.yaml", "a: [" + "x" * 5000, "is not valid YAML"),
    ],
)
def test_hostile_recipes_are_one_short_line(name, content, message, tmp_path, capsys):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    assert main(["train", "-c", str(path)]) == 2
    line = one_line_error(capsys, "train")
    assert message in line and len(line) < 400


def test_unknown_recipe_and_folder(tmp_path, capsys):
    assert main(["train", "-c", "cifar11_paper"]) == 2
    line = one_line_error(capsys, "train")
    assert all(name in line for name in list_recipes())
    assert main(["train", "-c", str(tmp_path)]) == 2
    assert "is a folder" in one_line_error(capsys, "train")


# ----------------------------------------------------------------------- mgnet models
# Exact parameter counts of every registered model at its default classes and channels.
COUNTS = {
    "mgnet_cifar": 8_278_794,
    "mgnet_cifar_constrained": 8_278_794,
    "mgnet_cifar_wise_b": 10_638_090,
    "mgnet_digits": 575_594,
    "mgnet_digits_constrained": 575_594,
    "mgnet_imagenet": 71_270_504,
    "mgnet_mnist": 575_594,
    "plain_cnn": 288_746,
    "preact_resnet18": 11_172_170,
    "preact_resnet_digits": 174_778,
    "resnet18": 11_689_512,
}


@pytest.fixture(scope="module")
def models_json():
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["models", "--json"]) == 0
    return json.loads(out.getvalue())


def test_models_counts_every_registered_model_exactly(models_json):
    from mgnet.models import list_models

    assert [r["name"] for r in models_json] == list_models()
    for row in models_json:
        if row["name"] in COUNTS:
            assert row["parameters"] == COUNTS[row["name"]], row["name"]
    assert set(COUNTS) <= {r["name"] for r in models_json}
    by_name = {r["name"]: r for r in models_json}
    assert by_name["mgnet_imagenet"]["spec"] == "mgnet[3,4,6,3]-[128,256,512,1024]-Bli-stem7"
    assert (by_name["mgnet_digits"]["in_channels"], by_name["mgnet_digits"]["input_size"]) == (
        1, 8,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["mgnet_digits", "plain_cnn", "preact_resnet_digits"])
def test_meta_counts_equal_allocated_counts(name, models_json):
    from mgnet.models import count_parameters, create_model

    row = next(r for r in models_json if r["name"] == name)
    assert count_parameters(create_model(name)) == row["parameters"]


def test_models_allocates_nothing(monkeypatch, capsys):
    import mgnet.models.registry as models

    devices = set()
    real = models.count_parameters

    def spy(model, *args, **kwargs):
        devices.update(p.device.type for p in model.parameters())
        return real(model, *args, **kwargs)

    monkeypatch.setattr(models, "count_parameters", spy)
    assert main(["models"]) == 0
    assert devices == {"meta"}
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["name", "parameters", "outputs", "input", "description"]
    assert {row.split()[0] for row in rows} >= set(COUNTS)
    # aligned: every number ends in the column where its header ends
    for column in ("parameters", "outputs", "input"):
        end = header.index(column) + len(column)
        for row in rows:
            assert row[end - 1] != " " and row[end] == " ", (column, row)
    for row in rows:
        name, count = row.split()[:2]
        if name in COUNTS:
            assert count == f"{COUNTS[name]:,}"


# ------------------------------------------------------------------------ mgnet plot
def write_metrics(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [
    {"epoch": 1, "train_loss": 2.0, "train_accuracy": 30.0, "val_loss": 1.9,
     "val_accuracy": 40.0, "lr": 0.1, "best": True},
    {"epoch": 2, "train_loss": 1.0, "train_accuracy": 60.0, "val_loss": 1.1,
     "val_accuracy": 55.0, "lr": 0.05, "best": True},
    {"epoch": 3, "train_loss": 0.5, "train_accuracy": 80.0, "val_loss": 1.2,
     "val_accuracy": 55.0, "lr": 0.0, "best": True},
    {"epoch": 4, "train_loss": 0.4, "train_accuracy": 85.0, "val_loss": 1.3,
     "val_accuracy": 50.0, "lr": 0.0, "best": False},
]  # fmt: skip


def test_plot_draws_a_real_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "2", "-o", str(run)]) == 0
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    out = capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    png = run / "curves.png"
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    assert out.startswith(f"saved {png}: 2 epochs, best validation accuracy ")
    assert out.rstrip().endswith(f"at epoch {results['best_epoch']}")


def test_plot_flags_and_the_best_epoch(tmp_path, capsys):
    run = tmp_path / "run"
    write_metrics(run, ROWS)
    out = tmp_path / "elsewhere.png"
    assert main(["plot", str(run), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # ties go to the later epoch (as in training): the last row marked best
    assert summary == {"out": str(out), "epochs": 4, "last_epoch": 4, "best_epoch": 3,
                       "best_val_accuracy": 55.0}  # fmt: skip
    assert out.read_bytes()[:8] == PNG and not (run / "curves.png").exists()
    assert main(["plot", str(run), "--out", str(tmp_path / "x.png")]) == 0
    assert capsys.readouterr().out.startswith(f"saved {tmp_path / 'x.png'}: 4 epochs, best ")


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: None, "does not exist; expected a run folder"),
        (lambda d: d.write_text("x"), "is not a folder"),
        (lambda d: d.mkdir(), "no metrics.jsonl in"),
        (lambda d: write_metrics(d, []), "is empty"),
        (
            lambda d: write_metrics(d, ROWS).write_text(
                "\n".join(json.dumps(r) for r in ROWS)[:-20]
            ),
            "line 4 of",
        ),
        (lambda d: write_metrics(d, [{"loss": 1.0}]), "line 1 of"),
    ],
    ids=["missing", "file", "no-metrics", "empty", "truncated", "no-epoch"],
)
def test_plot_bad_run_folders_are_one_line(make, message, tmp_path, capsys):
    run = tmp_path / "run"
    make(run)
    assert main(["plot", str(run)]) == 2
    assert message in one_line_error(capsys, "plot")


@pytest.mark.parametrize(
    "out,message",
    [("curves.jpg", "expected a .png"), ("folder.png", "is a folder"),
     ("missing/c.png", "does not exist")],
)  # fmt: skip
def test_plot_bad_out_is_one_line(out, message, tmp_path, capsys):
    write_metrics(tmp_path / "run", ROWS)
    (tmp_path / "folder.png").mkdir()
    assert main(["plot", str(tmp_path / "run"), "-o", str(tmp_path / out)]) == 2
    assert message in one_line_error(capsys, "plot")
