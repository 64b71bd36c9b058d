"""Messages for people: library code logs, the command line prints.

Every module of the package logs through a logger named under ``"mgnet"`` (for example
``mgnet.train``), created with :func:`get_logger`. A library user sees nothing unless
they configure :mod:`logging` (``logging.basicConfig(level=logging.INFO)`` shows the
training progress), and can silence or redirect the package with
``logging.getLogger("mgnet")``. The ``mgnet`` command calls :func:`setup_cli_logging`
once, which prints the messages as plain lines: progress (INFO) to standard output,
warnings and errors to standard error (and only those with ``--json``, whose standard
output a program reads).

This module imports nothing heavy (no torch), so the command line can use it at start-up.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["ROOT_LOGGER", "cli_logging", "get_logger", "setup_cli_logging"]

ROOT_LOGGER = "mgnet"


def get_logger(name: str) -> logging.Logger:
    """The logger ``mgnet.<name>`` (``name`` may already start with ``mgnet``)."""
    if name == ROOT_LOGGER or name.startswith(ROOT_LOGGER + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` (or ``sys.stderr``) is at the time of the message,
    so a redirected or captured stream receives it; flushes after every line."""

    def __init__(self, to_stderr: bool) -> None:
        self.to_stderr = to_stderr
        super().__init__(sys.stderr if to_stderr else sys.stdout)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr if self.to_stderr else sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:  # the base class assigns it; ignored
        pass


def setup_cli_logging(quiet: bool = False) -> logging.Logger:
    """Print the package's messages, message only (no level, no time): progress (INFO) on
    stdout, warnings and errors on stderr.

    ``quiet`` shows the warnings and errors only (for output that a program reads, such as
    ``--json``). Calling it again replaces the handlers it attached before, so it is safe
    to call once per command. Returns the ``mgnet`` logger.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(handler)
    out, err = _ConsoleHandler(to_stderr=False), _ConsoleHandler(to_stderr=True)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    return logger


@contextmanager
def cli_logging(quiet: bool = False) -> Iterator[logging.Logger]:
    """:func:`setup_cli_logging` for the duration of one command: afterwards the ``mgnet``
    logger has its former level and handlers again, so a program (or a test) that calls
    ``mgnet.cli.main`` and then uses the library does not keep printing its messages."""
    logger = logging.getLogger(ROOT_LOGGER)
    level, handlers = logger.level, list(logger.handlers)
    try:
        yield setup_cli_logging(quiet)
    finally:
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
        logger.setLevel(level)
