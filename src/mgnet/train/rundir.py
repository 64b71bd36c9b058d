"""The run folder: written by one run at a time, and never overwritten by another command.

A run folder holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``, ``best.pt`` and
``results.json`` (:data:`RUN_FILES`). Three rules keep it whole:

* **One writer.** A run (fresh or resumed) holds an exclusive lock on ``.lock`` in the
  folder from before its data is loaded until it ends; a second ``mgnet train`` into the
  same folder is refused in one line naming the process that holds it. The lock is an
  ``flock`` on POSIX systems, which the operating system releases when the process dies,
  so a killed run never leaves a stale lock; elsewhere it is a file created with
  ``O_EXCL`` and removed at the end (after a crash, delete it by hand).
* **A fresh folder per default run.** :func:`fresh_run_dir` claims ``runs/train/<name>``
  (or ``-2``, ``-3``, ...) with an atomic ``mkdir``, so two runs started together never
  share one.
* **No output flag overwrites a run's files.** :func:`check_output` refuses an output path
  that is one of the files of a run folder (``mgnet export -o RUN/best.pt``, ``mgnet
  eval -o RUN/results.json``) unless ``force`` is given.

Files are written atomically (a temporary file in the same folder, then ``os.replace``),
and ``metrics.jsonl`` is read back by :func:`read_metrics`, which drops a line cut short
by a crash and refuses any other damage, naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mgnet.errors import quote
from mgnet.log import get_logger

__all__ = [
    "LOCK_NAME",
    "atomic_file",
    "RUN_FILES",
    "RunFolderBusy",
    "check_output",
    "check_writable",
    "fresh_run_dir",
    "holds_run",
    "lock_run_folder",
    "read_metrics",
    "write_json",
    "write_lines",
]

RUN_FILES = ("checkpoint.pt", "best.pt", "results.json", "config.json", "metrics.jsonl")
LOCK_NAME = ".lock"
log = get_logger("train")

try:
    import fcntl
except ImportError:  # Windows: O_EXCL lock files
    fcntl = None  # type: ignore[assignment]


class RunFolderBusy(ValueError):
    """Another process is writing this run folder."""


def holds_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds a run that has written a checkpoint or its results."""
    folder = Path(folder)
    return any((folder / name).exists() for name in ("checkpoint.pt", "best.pt", "results.json"))


def _is_run_folder(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def check_output(path: str | Path, force: bool = False, flag: str = "--out") -> Path:
    """``path`` as an output file: refused (one-line ``ValueError``) when it is a file of a
    run folder (:data:`RUN_FILES`, or the lock) and ``force`` is false, or a folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag}: {quote(str(path))} is a folder; give a file name")
    if force:
        return path
    protected = path.name == LOCK_NAME or (path.name in RUN_FILES and _is_run_folder(path.parent))
    if protected:
        raise ValueError(
            f"{flag}: {quote(str(path))} is the {path.name} of the run in "
            f"{quote(str(path.parent))}; choose another file, or add --force to overwrite it"
        )
    return path


def check_writable(folder: str | Path, flag: str = "output_dir") -> Path:
    """Create ``folder`` (and its parents) or confirm it exists and can be written; every
    failure (a file in the way, no permission, a read-only file system) is one line."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag}: {quote(str(folder))} is a file, not a folder; choose another")
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"{flag}: {quote(str(folder))} cannot be created: "
                    f"{quote(str(parent))} is a file"
                )
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"{flag}: cannot create {quote(str(folder))} ({e.strerror or type(e).__name__}); "
            "choose a folder you can write to"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(
            f"{flag}: no permission to write in {quote(str(folder))}; choose a folder you "
            "can write to"
        )
    return folder


def _holder(lock: Path) -> str:
    try:
        text = lock.read_text().strip()
    except OSError:
        return "another process"
    return f"process {text[:80]}" if text else "another process"


def _busy(folder: Path, lock: Path) -> RunFolderBusy:
    return RunFolderBusy(
        f"output_dir: {quote(str(folder))} is being written by {_holder(lock)} (lock "
        f"{quote(str(lock))}); wait for that run to end, or choose another --output-dir"
    )


@contextlib.contextmanager
def lock_run_folder(folder: str | Path) -> Iterator[Path]:
    """Hold the run folder's exclusive lock (the folder is created when missing); a
    second holder is refused with :class:`RunFolderBusy`. The lock file is removed when
    the block ends."""
    folder = check_writable(folder)
    lock = folder / LOCK_NAME
    me = f"{os.getpid()} on {socket.gethostname()}"
    fd = -1
    try:
        for _ in range(20):  # retried only if a finishing run removed the file meanwhile
            try:
                if fcntl is not None:
                    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError as e:
                        os.close(fd)
                        fd = -1  # not ours: never remove another run's lock file
                        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                            raise _busy(folder, lock) from None
                        raise
                    # the file may have been removed (and re-created) by the previous
                    # holder between our open and our lock: then it is not the lock
                    try:
                        same = os.stat(lock).st_ino == os.fstat(fd).st_ino
                    except FileNotFoundError:
                        same = False
                    if not same:
                        os.close(fd)
                        fd = -1
                        continue
                    os.ftruncate(fd, 0)
                else:
                    try:
                        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                    except FileExistsError:
                        raise _busy(folder, lock) from None
                os.write(fd, me.encode() + b"\n")
                break
            except OSError as e:
                raise ValueError(
                    f"output_dir: cannot write the lock file {quote(str(lock))} "
                    f"({e.strerror or type(e).__name__}); choose a folder you can write to"
                ) from None
        else:  # pragma: no cover - a lock file replaced 20 times in a row
            raise _busy(folder, lock)
        yield folder
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                lock.unlink()  # before unlocking: a waiting opener then sees another inode
            os.close(fd)


def fresh_run_dir(root: str | Path, name: str) -> Path:
    """Claim ``root/name``, or ``root/name-2``, ``-3``, ... : the first that does not
    exist yet, created here with an atomic ``mkdir`` (two runs never get the same one).

    ``name`` is reduced to letters, digits, ``-``, ``_`` and ``.`` (spec strings have
    brackets and commas)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("_")[:100]
    root = check_writable(root, flag="output_dir")
    n = 1
    while True:
        candidate = root / (safe if n == 1 else f"{safe}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            n += 1
            continue
        except OSError as e:
            raise ValueError(
                f"output_dir: cannot create {quote(str(candidate))} "
                f"({e.strerror or type(e).__name__}); choose a folder you can write to"
            ) from None
        return candidate


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; when the block ends without an
    error it is flushed to disk and renamed onto ``path`` (``os.replace``), so a crash or
    an interruption leaves the previous file intact and no partial one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written atomically."""
    write_lines(path, [json.dumps(data, indent=2)])


def write_lines(path: Path, lines: list[str]) -> None:
    """``lines`` (a newline is added to each) written atomically (:func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write("".join(line + "\n" for line in lines))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl``. A last line cut short (no newline, not valid JSON:
    a crash while it was written) is dropped with a warning; any other unreadable line is
    a one-line ``ValueError`` naming the file and the line."""
    if not path.exists():
        return []
    text = path.read_text(errors="replace")
    lines = text.split("\n")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise ValueError("not a row with an integer 'epoch'")
        except ValueError as e:
            if number == len(lines):  # the last line, with no newline after it
                log.warning(
                    f"resume: dropped the unfinished last line of {quote(str(path))} "
                    "(cut short by the interruption); the epoch is redone"
                )
                break
            raise ValueError(
                f"resume: {quote(str(path))} line {number} is not a metrics row "
                f"({str(e)[:100]}); repair or delete that line, then resume again"
            ) from None
        rows.append(row)
    return rows
