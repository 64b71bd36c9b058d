"""Messages for people: library code logs, the command line prints.

Every module of the package logs through a logger named under ``"mgnet"`` (for example
``mgnet.train``), created with :func:`get_logger`. A library user sees nothing unless
they configure :mod:`logging` (``logging.basicConfig(level=logging.INFO)`` shows the
training progress), and can silence or redirect the package with
``logging.getLogger("mgnet")``. The ``mgnet`` command calls :func:`setup_cli_logging`
once, which prints the messages of level INFO and above to standard output, as plain
lines.

This module imports nothing heavy (no torch), so the command line can use it at start-up.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["ROOT_LOGGER", "get_logger", "setup_cli_logging"]

ROOT_LOGGER = "mgnet"


def get_logger(name: str) -> logging.Logger:
    """The logger ``mgnet.<name>`` (``name`` may already start with ``mgnet``)."""
    if name == ROOT_LOGGER or name.startswith(ROOT_LOGGER + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time of the message (so a redirected
    or captured stdout receives it), flushing after every line."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:  # the base class assigns it; ignored
        pass


def setup_cli_logging(quiet: bool = False) -> logging.Logger:
    """Print the package's messages to stdout, message only (no level, no time).

    ``quiet`` shows warnings and errors only. Calling it again replaces the handler it
    attached before, so it is safe to call once per command. Returns the ``mgnet`` logger.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _StdoutHandler)]:
        logger.removeHandler(handler)
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    return logger
