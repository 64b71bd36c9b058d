"""`mgnet train` and `mgnet demo` from the command line: runs, resume, and one-line errors."""

from __future__ import annotations

import json
import re

import pytest
import torch

from mgnet.cli import main

TINY = ["--model", "mgnet[1,1]-8", "-b", "128", "--threads", "1", "--no-progress"]


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mgnet train: error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--epochs", "2", "-o", str(out)]) == 0
    return out


def test_train_writes_the_run_and_test_only_reads_it_back(finished_run, capsys):
    results = json.loads((finished_run / "results.json").read_text())
    assert results["model"] == "mgnet[1,1]-8" and results["epochs"] == 2
    cfg = json.loads((finished_run / "config.json").read_text())
    assert cfg["batch_size"] == 128 and cfg["threads"] == 1 and cfg["data"] == "digits"
    code, out, err = run(["train", "--resume", str(finished_run), "--test-only"], capsys)
    assert code == 0 and err == ""
    assert f"test accuracy {results['test_accuracy']:.2f}% (360 images)" in out


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--model", "resnet-7"], ["unknown model 'resnet-7'", "mgnet_digits", "preact_resnet18"]),
        (["--data", "digitz"], ["unknown dataset 'digitz'", "digits", "cifar10"]),
        (["--in-channels", "3"], ["in_channels: 3", "accepted: 1"]),
        (["--model", "mgnet[1,1,1,1,1]-8"], ["at least 16x16", "8x8", "at most 4 levels"]),
        (["--model", "mgnet[2,2]-8-Bx"], ["unknown option 'bx'", "accepted"]),
        (["--model-kwargs", "width=8"], ["unknown option(s) width", "accepted"]),
        (["--epochs", "0"], ["epochs: 0", "positive integer"]),
        (["--device", "tpu"], ["device: 'tpu'", "auto, cpu, cuda"]),
        (["--test-only"], ["--test-only needs --resume DIR"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, needles, capsys, tmp_path):
    args = ["train", "--model", "mgnet[1,1]-8", *argv, "-o", str(tmp_path / "r")]
    code, _, err = run(args, capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_nan_loss_is_one_line_naming_epoch_and_step(capsys, tmp_path):
    code, _, err = run(["train", *TINY, "--lr", "1e30", "-o", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "loss is nan at epoch 1, step ")


def test_truncated_and_foreign_checkpoints_through_resume(finished_run, capsys, tmp_path):
    data = (finished_run / "checkpoint.pt").read_bytes()
    (tmp_path / "truncated").mkdir()
    (tmp_path / "truncated" / "checkpoint.pt").write_bytes(data[:1000])
    (tmp_path / "foreign").mkdir()
    torch.save({"model": {}, "epoch": 3}, tmp_path / "foreign" / "checkpoint.pt")
    for name in ("truncated", "foreign"):
        code, _, err = run(["train", "--resume", str(tmp_path / name)], capsys)
        assert_one_line_error(code, err, "checkpoint: ", "not a checkpoint of this package")
    code, _, err = run(["train", "--resume", str(tmp_path / "nothing")], capsys)
    assert_one_line_error(code, err, "no such file")


def test_resume_keeps_the_stored_recipe(finished_run, capsys):
    code, _, err = run(["train", "--resume", str(finished_run), "--lr", "0.3"], capsys)
    assert_one_line_error(code, err, "lr=0.3 differs from the stored run")
    code, _, err = run(["train", "--resume", str(finished_run)], capsys)
    assert_one_line_error(code, err, "already finished its 2 epochs")


def test_recipe_file_and_flags_precedence(capsys, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(
        json.dumps(
            {
                "model": "mgnet[1,1]-8",
                "epochs": 1,
                "lr": 0.05,
                "batch_size": 256,
                "threads": 1,
                "progress": False,
            }
        )
    )
    out = tmp_path / "r"
    assert main(["train", "-c", str(recipe), "--lr", "0.02", "-o", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["epochs"], cfg["batch_size"], cfg["lr"]) == (1, 256, 0.02)
    recipe.write_text(json.dumps({"epoch": 1}))
    code, _, err = run(["train", "-c", str(recipe)], capsys)
    assert_one_line_error(code, err, "unknown key(s) epoch", "epochs")


def test_default_output_dir_is_fresh_each_time(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["train", *TINY, "--epochs", "1"]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs" / "train").iterdir())
    assert runs == ["digits-mgnet_1_1_-8", "digits-mgnet_1_1_-8-2"]


def test_demo_prints_both_models_side_by_side(capsys, tmp_path):
    code = main(
        [
            "demo",
            "--epochs",
            "1",
            "--baseline",
            "preact_resnet_digits",
            "--threads",
            "1",
            "-o",
            str(tmp_path),
            "--poisson-n",
            "127",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    # part 2: the same cycle solves 2D Poisson; its factor is the red-black V(1,1) one
    poisson = re.search(r"mgnet: +(\d+) cycles, factor ([0-9.]+)", out)
    assert poisson is not None, out
    assert int(poisson.group(1)) <= 12 and float(poisson.group(2)) <= 0.2
    assert "PyAMG (RS)" in out
    table = out[out.index("\nmodel ") + 1 :].splitlines()
    assert table[0].split()[:3] == ["model", "parameters", "test"]
    assert table[1].split()[:2] == ["mgnet_digits", "575,594"]
    assert table[2].split()[:2] == ["preact_resnet_digits", "174,778"]
    for row, name in zip(table[1:3], ("mgnet_digits", "preact_resnet_digits")):
        acc = float(row.split()[2])
        assert acc == pytest.approx(
            json.loads((tmp_path / "classify" / name / "results.json").read_text())[
                "test_accuracy"
            ],
            abs=0.006,
        )


def test_ctrl_c_writes_a_checkpoint_and_exits_130(tmp_path):
    """A real SIGINT to a running `mgnet train`: checkpoint first, then exit status 130."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mgnet.cli", "train", *TINY, "--epochs", "200", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted at epoch" in stdout and "--resume" in stdout
    assert stderr.strip().splitlines()[-1] == "mgnet: interrupted"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] >= 1 and state["epoch"] < 200
    assert state["partial"] is not None and state["partial"]["step"] >= 1
