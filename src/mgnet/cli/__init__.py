"""The ``mgnet`` command. Thin: it parses arguments and calls the package.

Each subcommand is one module of this package with ``add_parser(sub)`` (which adds its
parser and sets ``run``) and ``run(args) -> int``; :data:`SUBCOMMANDS` lists the modules in
the order ``mgnet --help`` shows them. A new subcommand is a new module and one more name
in that list. Building the parser imports no torch: ``--help`` and ``--version`` are
instant, and the parsers take their choices from :mod:`mgnet.constants`.

Errors: what a user got wrong (a ``ValueError``, ``TypeError`` or ``OSError``, or one of the
package's own :class:`~mgnet.errors.MgNetError`) is one line on stderr and exit status 2.
Anything else is a defect and keeps its traceback. ``--debug`` (or ``MGNET_DEBUG=1``)
shows the traceback of every error. :func:`emit` is the one output rule: ``--json`` prints
the JSON alone, otherwise lines for a person (docs/design.md, "The command line").
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Iterable, Sequence

from mgnet.errors import USER_ERRORS, MgNetError, first_line
from mgnet.log import cli_logging

__all__ = ["SUBCOMMANDS", "UserError", "build_parser", "emit", "main", "use_threads"]

# Modules of mgnet.cli, one per subcommand, in the order of `mgnet --help`.
# (`inspect_`: a module named `inspect` would shadow the standard library's.)
SUBCOMMANDS = [
    "models",
    "solve",
    "learn_smoother",
    "inspect_",
    "export",
    "train",
    "demo",
    "eval",
    "plot",
    "data",
]

MESSAGE_LIMIT = 500  # characters of an error line; a message quotes at most ~200 of a value


class UserError(MgNetError):
    """An error whose message is the whole story: printed as one line, exit status 2."""


class _Version(argparse.Action):
    """``--version``: the installed distribution's version (read only when asked)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")  # fmt: skip

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        import mgnet

        print(f"mgnet {mgnet.__version__}")
        parser.exit()


def emit(result: object, lines: Iterable[str], as_json: bool) -> None:
    """A command's output: ``result`` as JSON with ``--json`` (standard output then holds
    nothing else, for a program to read), the ``lines`` for a person otherwise."""
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for line in lines:
        print(line)


def use_threads(threads: int, zero_is_torchs: bool = False) -> None:
    """Check ``--threads`` and give torch that many CPU threads; with ``zero_is_torchs``,
    0 leaves torch's own choice."""
    low = 0 if zero_is_torchs else 1
    if threads < low:
        accepted = "0 (torch's choice) or positive" if zero_is_torchs else ">= 1"
        raise UserError(f"--threads: must be {accepted}, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgnet", description="MgNet: one multigrid cycle, a CNN and a PDE solver."
    )
    parser.add_argument("--version", action=_Version)
    debug = "show the traceback of every error (also: MGNET_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    for p in sub.choices.values():  # `mgnet COMMAND --debug` works as well
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
    return parser


def _debug_env() -> bool:
    return os.environ.get("MGNET_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = vars(args).pop("debug", False) or _debug_env()
    # the package logs; the command prints its messages (warnings only under --json)
    with cli_logging(quiet=bool(getattr(args, "json", False))):
        return _run(args, debug)


def _run(args: argparse.Namespace, debug: bool) -> int:
    try:
        return args.run(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("mgnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mgnet models | head`: the reader left, nothing to report
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- silences the flush at exit
        return 141
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"mgnet {args.command}: error: {first_line(e, MESSAGE_LIMIT)}", file=sys.stderr)
        return 2
