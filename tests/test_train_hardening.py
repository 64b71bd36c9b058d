"""Training and data as a careless or hostile user meets them: no code runs from a data
file, a run folder has one writer and no command overwrites its files, an interrupted run
can always be completed, every bad path is one line, and resume works whatever device the
checkpoint is read onto. Every crafted input is written by the test itself."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import pickle
import random
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mgnet.cli import main
from mgnet.data.vision import load_arrays
from mgnet.train import (
    TrainConfig,
    load_checkpoint,
    resume_config,
    save_checkpoint,
    train,
)
from mgnet.train.checkpoint import rng_state, set_rng_state
from test_data_vision import _idx_bytes, write_cifar, write_mnist  # tests/ is on sys.path

TINY = "mgnet[1,1]-8"
ARGS = ["--model", TINY, "-b", "128", "--threads", "1", "--no-progress"]


def tiny(tmp_path, name="run", **kw) -> TrainConfig:
    values = {"model": TINY, "epochs": 3, "batch_size": 128, "progress": False, "threads": 1,
              "output_dir": str(tmp_path / name)}  # fmt: skip
    return TrainConfig(**{**values, **kw})


def one_line_error(capsys, argv, *needles, command="train") -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mgnet {command}: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-epoch run (kept unchanged by the tests that use it)."""
    out = tmp_path_factory.mktemp("finished")
    results = train(tiny(out))
    return out / "run", results


def _same_weights(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ---------------------------------------------------------------- no code from data
class _OpensAFile:
    """Unpickling this creates ``marker``: what a hostile CIFAR batch could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path, capsys):
    write_cifar(tmp_path / "data", "cifar10", n_train=4, n_test=4)
    marker = tmp_path / "marker"
    batch = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1"
    entry = {
        "data": np.zeros((4, 3072), np.uint8),
        "labels": [0, 1, 2, 3],
        "x": _OpensAFile(marker),
    }
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(ValueError) as e:
        load_arrays("cifar10", tmp_path / "data")
    assert not marker.exists()
    message = str(e.value)
    assert "\n" not in message and "data_batch_1" in message and "names io.open" in message
    assert "refused" in message
    argv = ["train", "--data", "cifar10", "--data-dir", str(tmp_path / "data"), *ARGS,
            "--epochs", "1", "-o", str(tmp_path / "run")]  # fmt: skip
    one_line_error(capsys, argv, "data_batch_1", "refused")
    assert not marker.exists()


def test_mgnet_eval_of_a_checkpoint_pointing_at_a_hostile_folder_runs_no_code(tmp_path, capsys):
    data = tmp_path / "data"
    write_cifar(data, "cifar10", n_train=4, n_test=4)
    cfg = TrainConfig(model=TINY, data="cifar10", data_dir=str(data), epochs=1, batch_size=8,
                      threads=1, progress=False, output_dir=str(tmp_path / "run"))  # fmt: skip
    train(cfg)
    marker = tmp_path / "marker"
    batch = data / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({"data": _OpensAFile(marker), "labels": [0]}, protocol=2))
    capsys.readouterr()
    argv = ["eval", "--checkpoint", str(tmp_path / "run" / "best.pt")]
    one_line_error(capsys, argv, "test_batch", "refused", command="eval")
    assert not marker.exists()


def test_a_real_cifar_layout_still_reads(tmp_path):
    """Python 2 pickles of the official files: bytes keys, NumPy arrays, lists of ints."""
    written = write_cifar(tmp_path, "cifar10", n_train=3, n_test=2)
    arrays = load_arrays("cifar10", tmp_path)
    assert arrays["train"][0].shape == (15, 3, 32, 32)
    x, y = written["test"]
    assert torch.equal(arrays["test"][0], torch.from_numpy(x.reshape(-1, 3, 32, 32)))


def _gzip(path: Path, payload: bytes) -> None:
    with gzip.open(path, "wb") as fh:
        fh.write(payload)


def test_gzipped_idx_files_are_capped_at_their_declared_size(tmp_path):
    write_mnist(tmp_path, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    # declares 2 images of 28x28, holds 20 MB more: decompression stops at the declared size
    _gzip(raw / "t10k-images-idx3-ubyte.gz", _idx_bytes(np.zeros((2, 28, 28))) + bytes(20 << 20))
    with pytest.raises(ValueError) as e:
        load_arrays("mnist", tmp_path)
    message = str(e.value)
    assert "\n" not in message and "t10k-images-idx3-ubyte.gz" in message
    assert "more than the 1,584 bytes its header declares" in message
    assert not (raw / "t10k-images-idx3-ubyte").exists()
    assert not list(raw.glob(".*part*"))
    # a header that declares 2^40 bytes is refused before anything is written
    header = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">3I", 2**20, 2**10, 2**10)
    _gzip(raw / "t10k-images-idx3-ubyte.gz", header)
    with pytest.raises(ValueError, match="declares 1,099,511,627,792 bytes"):
        load_arrays("mnist", tmp_path)
    assert not (raw / "t10k-images-idx3-ubyte").exists()


def test_an_interrupted_decompression_leaves_no_half_written_file(tmp_path, monkeypatch):
    write_mnist(tmp_path, n_train=300, gz=True)  # 235 KB of images: several reads
    raw = tmp_path / "MNIST" / "raw"
    calls = {"n": 0}
    original = gzip.GzipFile.read

    def read(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(gzip.GzipFile, "read", read)
    with pytest.raises(KeyboardInterrupt):
        load_arrays("mnist", tmp_path)
    assert not (raw / "train-images-idx3-ubyte").exists()
    assert not list(raw.glob(".*part*"))
    monkeypatch.undo()
    assert load_arrays("mnist", tmp_path)["train"][0].shape == (300, 1, 28, 28)


# ---------------------------------------------------------------- one run per folder
def test_a_second_writer_is_refused_while_a_run_holds_the_folder(tmp_path, capsys):
    """Two runs into one folder: the second is refused in one line, fresh or resumed, and
    the first finishes with its own files."""
    run = tmp_path / "run"
    codes = {}

    def second_writer(epoch, step, loss):
        if (epoch, step) == (1, 2):  # no checkpoint yet: only the lock can tell
            codes["fresh"] = main(["train", *ARGS, "--epochs", "1", "-o", str(run)])
            codes["fresh_err"] = capsys.readouterr().err
        if (epoch, step) == (2, 2):
            codes["resume"] = main(["train", "--resume", str(run)])
            codes["resume_err"] = capsys.readouterr().err

    results = train(tiny(tmp_path, epochs=2), step_hook=second_writer)
    assert codes["fresh"] == 2 and codes["resume"] == 2
    for key in ("fresh_err", "resume_err"):
        lines = codes[key].strip().splitlines()
        assert len(lines) == 1 and f"is being written by process {os.getpid()}" in lines[0]
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert json.loads((run / "results.json").read_text()) == pytest.approx(results)
    assert not (run / ".lock").exists()  # released at the end


@pytest.mark.slow
def test_a_second_process_is_refused_while_a_run_holds_the_folder(tmp_path, capsys):
    import signal
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mgnet.cli", "train", *ARGS, "--epochs", "200", "-o", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        one_line_error(capsys, ["train", "--resume", str(run)], f"process {proc.pid} on")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_default_run_folders_are_claimed_atomically(tmp_path, monkeypatch):
    from mgnet.train.rundir import fresh_run_dir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "train" / "x").mkdir(parents=True)  # an empty folder is taken too
    assert fresh_run_dir("runs/train", "x") == Path("runs/train/x-2")
    assert fresh_run_dir("runs/train", "x") == Path("runs/train/x-3")
    assert (tmp_path / "runs/train/x-3").is_dir()


def test_a_run_that_never_starts_leaves_no_empty_default_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, ["train", "--model", "resnet-7", "--threads", "1"], "resnet-7")
    argv = ["train", *ARGS, "--data", "cifar10", "--data-dir", str(tmp_path / "none")]
    one_line_error(capsys, argv, "not found")
    assert not (tmp_path / "runs" / "train").exists() or not any(
        (tmp_path / "runs" / "train").iterdir()
    )


def test_output_flags_never_overwrite_a_runs_files(finished, tmp_path, capsys):
    run, _ = finished
    best, results = run / "best.pt", run / "results.json"
    before = {p: p.read_bytes() for p in (best, results, run / "checkpoint.pt")}
    for target in (best, run / "checkpoint.pt"):
        argv = ["export", "--checkpoint", str(best), "--format", "torchscript", "-o", str(target)]
        one_line_error(capsys, argv, target.name, "--force", command="export")
    argv = ["eval", "--checkpoint", str(best), "-o", str(results), "--no-plot"]
    one_line_error(capsys, argv, "results.json", "--force", command="eval")
    assert {p: p.read_bytes() for p in before} == before
    # --force overwrites (here in a copy of the run, so the shared run stays whole)
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in before:
        (copy / p.name).write_bytes(before[p])
    argv = ["eval", "--checkpoint", str(copy / "best.pt"), "-o", str(copy / "results.json"),
            "--no-plot", "--force"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((copy / "results.json").read_text())["split"] == "test"


# ----------------------------------------------------------- interrupted, completed
def test_ctrl_c_during_the_final_test_is_completed_by_resume(finished, tmp_path, monkeypatch):
    import mgnet.train.loop as loop

    def interrupt(*args, **kwargs):  # the first thing the final test does
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "replica_max_diff", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path))
    run = tmp_path / "run"
    assert not (run / "results.json").exists()
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 3
    monkeypatch.undo()
    results = train(resume_config(run), resume=True)  # only the final test runs
    expected = finished[1]
    for key in ("test_accuracy", "test_loss", "best_epoch", "last_test_accuracy"):
        assert results[key] == expected[key], key
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    _same_weights(run / "checkpoint.pt", finished[0] / "checkpoint.pt")
    with pytest.raises(ValueError, match="already finished its 3 epochs"):
        train(resume_config(run), resume=True)


def _interrupted_run(tmp_path, at=(3, 2)) -> Path:
    def interrupt(epoch, step, loss):
        if (epoch, step) == at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path), step_hook=interrupt)
    return tmp_path / "run"


def test_resume_drops_a_metrics_line_cut_short_and_rewrites_the_file(finished, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="mgnet")
    run = _interrupted_run(tmp_path)
    metrics = run / "metrics.jsonl"
    with metrics.open("a") as fh:
        fh.write('{"epoch": 3, "train_loss": 0.9')  # the crash hit while writing a line
    train(resume_config(run), resume=True)
    assert "dropped the unfinished last line" in caplog.text and "metrics.jsonl" in caplog.text
    rows = [json.loads(r) for r in metrics.read_text().splitlines()]  # every line parses
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    _same_weights(run / "checkpoint.pt", finished[0] / "checkpoint.pt")


def test_resume_refuses_other_damage_to_the_metrics_naming_the_file(tmp_path, capsys):
    run = _interrupted_run(tmp_path)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text(lines[0][:20] + "\n" + lines[1] + "\n")
    message = one_line_error(capsys, ["train", "--resume", str(run)], "metrics.jsonl' line 1")
    assert "repair or delete that line" in message


# ------------------------------------------------------------------ one-line errors
def test_an_output_folder_that_is_a_file_fails_before_the_data_loads(tmp_path, capsys, monkeypatch):
    import mgnet.train.loop as loop

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the output folder was checked")

    monkeypatch.setattr(loop, "get_dataset", no_data)
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, ["train", *ARGS, "-o", str(tmp_path / "file")], "is a file")
    one_line_error(capsys, ["train", *ARGS, "-o", str(tmp_path / "file" / "run")], "is a file")


def _deny_mkdir(monkeypatch, under: Path, err: int, text: str) -> None:
    original = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self.absolute()).startswith(str(under)):
            raise OSError(err, text)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_an_output_folder_without_write_permission_is_one_line(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    _deny_mkdir(monkeypatch, locked, errno.EACCES, "Permission denied")
    one_line_error(capsys, ["train", *ARGS, "-o", str(locked / "run")], "Permission denied")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_folder_without_write_permission_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        one_line_error(capsys, ["train", *ARGS, "-o", str(locked / "run")], "locked")
        one_line_error(capsys, ["train", *ARGS, "-o", str(locked)], "permission")
    finally:
        locked.chmod(0o700)


def test_a_read_only_working_directory_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _deny_mkdir(monkeypatch, tmp_path, errno.EROFS, "Read-only file system")
    one_line_error(capsys, ["train", *ARGS], "Read-only file system", "runs")


def test_best_pt_where_a_runs_checkpoint_is_expected(finished, tmp_path, capsys):
    run, _ = finished
    one_line_error(capsys, ["train", "--resume", str(run / "best.pt")], "is a file",
                   "run folder")  # fmt: skip
    copied = tmp_path / "copied"
    copied.mkdir()
    (copied / "checkpoint.pt").write_bytes((run / "best.pt").read_bytes())
    one_line_error(capsys, ["train", "--resume", str(copied)], "weights only",
                   "not the checkpoint of a run")  # fmt: skip


def test_a_checkpoint_without_config_is_one_line(finished, tmp_path, capsys):
    state = load_checkpoint(finished[0] / "checkpoint.pt")
    del state["config"], state["format"]
    bare = tmp_path / "bare"
    bare.mkdir()
    save_checkpoint(state, bare / "checkpoint.pt")
    one_line_error(capsys, ["train", "--resume", str(bare)], "lacks config")
    one_line_error(capsys, ["eval", "--checkpoint", str(bare / "checkpoint.pt")], "'config'",
                   command="eval")  # fmt: skip
    argv = ["export", "--checkpoint", str(bare / "checkpoint.pt"), "--format", "torchscript"]
    one_line_error(capsys, argv, "'config'", command="export")


def test_an_error_never_echoes_more_than_about_200_characters(capsys, tmp_path):
    import re

    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"k" * 5000: 1}))
    out = ["-o", str(tmp_path / "r")]
    cases = [
        ("d", ["--data", "d" * 5000, *out]),
        ("c", ["--device", "c" * 5000, *out]),
        ("k", ["-c", str(recipe), *out]),
        ("f", ["--resume", str(tmp_path / ("f" * 200) / ("f" * 200) / ("f" * 200))]),
    ]
    for letter, argv in cases:
        line = one_line_error(capsys, ["train", *argv])
        echoed = sum(len(run) for run in re.findall(f"{letter}{{20,}}", line))
        assert echoed <= 210, (argv[0], echoed)


# ------------------------------------------------------------------------ resume
def test_generator_states_restore_from_a_checkpoint_read_onto_another_device(tmp_path):
    """A CUDA resume reads the file with map_location=cuda; 'meta' stands in for it here:
    the generator states must come back from the host whatever the map_location."""
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    save_checkpoint({"rng": rng_state()}, tmp_path / "c.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "c.pt", map_location="meta")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and (got[1] == expected[1]).all()
    assert got[2] == expected[2]


# ---------------------------------------------------------------------- torchrun
_WORKER = """
import json, os, signal, sys
import mgnet.train.loop as loop
from mgnet.train import TrainConfig, train

loop.CHECK_EVERY = 4
rank = int(os.environ["RANK"])
seen = []

def hook(epoch, step, loss):
    seen.append(step)
    if rank == 1 and (epoch, step) == (1, 2):
        os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C that reaches one process only

cfg = TrainConfig(model="mgnet[1,1]-8", epochs=1, batch_size=32, augment=False, threads=1,
                  progress=False, output_dir=sys.argv[1])
try:
    train(cfg, step_hook=hook)
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "interrupted"
except Exception as e:
    outcome = f"{type(e).__name__}: {e}"
with open(f"{sys.argv[1]}-rank{rank}.json", "w") as fh:
    json.dump({"outcome": outcome, "last_step": seen[-1] if seen else 0}, fh)
"""


def test_torchrun_ranks_agree_on_the_step_to_stop_at_after_ctrl_c(tmp_path):
    """Rank 1 alone gets a Ctrl-C after step 2; both ranks stop after the same step (the
    next check point), no rank blocks in an all-reduce, rank 0's checkpoint is that step."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER))
    out = tmp_path / "run"
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(29500 + os.getpid() % 1000),
               "OMP_NUM_THREADS": "1"}  # fmt: skip
        procs.append(
            subprocess.Popen([sys.executable, str(script), str(out)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )  # fmt: skip
    for proc in procs:
        try:
            proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("a rank blocked after the Ctrl-C")
    reports = [json.loads(Path(f"{out}-rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["outcome"] for r in reports] == ["interrupted", "interrupted"], reports
    assert reports[0]["last_step"] == reports[1]["last_step"] == 4, reports
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 0 and state["partial"]["step"] == 4


def test_one_visible_gpu_per_process_is_device_0_of_each(monkeypatch):
    """A scheduler that gives each process one GPU: LOCAL_RANK 1 must use cuda:0."""
    import torch.distributed as dist

    from mgnet.train.distributed import init_distributed

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = init_distributed("auto")
    assert chosen == [0] and info.rank == 1
    assert getattr(info, "device_index", 0) == 0
