"""The package's own error types, and the rule for quoting a user's value in a message.

Errors caused by what a user passed (arguments, files, data) are ``ValueError``,
``TypeError`` or ``OSError`` (subclasses included), or a :class:`MgNetError`: their
message is one line that says it all, and ``mgnet`` prints it and exits with status 2.
Anything else is a defect of the code or of its environment (a ``RuntimeError`` from
torch, such as running out of CUDA memory) and keeps its traceback.
"""

from __future__ import annotations

import reprlib

__all__ = [
    "DivergenceError",
    "DownloadError",
    "MgNetError",
    "MissingDependency",
    "USER_ERRORS",
    "first_line",
    "quote",
]

QUOTE_LIMIT = 200  # the most characters of a user's value that a message repeats


class MgNetError(Exception):
    """Base of the package's own errors: a one-line message about a cause outside the code
    (bad input, a run that diverged, a download that failed)."""


class DivergenceError(MgNetError, RuntimeError):
    """An iteration (training, a solver) produced non-finite numbers."""


class DownloadError(MgNetError, RuntimeError):
    """Fetching a data set failed."""


class MissingDependency(MgNetError, ImportError):
    """An optional package that a feature needs is not installed (the message says how to
    install it)."""


# What the command line reports in one line (exit status 2) instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, MgNetError)

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = QUOTE_LIMIT
_repr.maxlevel, _repr.maxdict, _repr.maxlist = 3, 8, 8


def first_line(error: BaseException, limit: int = QUOTE_LIMIT) -> str:
    """The first line of ``error``'s message (its type's name when empty), at most ``limit``
    characters: for wrapping an error from a library into a one-line message."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for a message, at most ``limit`` characters, computed without
    expanding a huge or self-referencing value (a YAML alias bomb) in full."""
    text = _repr.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
