"""The ``mgnet`` command. Thin: it parses arguments and calls the package.

Every subcommand turns a user error (``ValueError``, ``FileNotFoundError``, ...) raised by
the package into a one-line message on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["main", "build_parser"]


class UserError(Exception):
    """An error whose message is the whole story: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- models
def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the registered models and their parameter counts",
        description="List registered models. Any MgNet spec string, e.g. "
        "'mgnet[2,2,2,2]-256-Bl', is accepted wherever a model name is.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from mgnet.models import count_parameters, create_model, list_models, model_info

    rows = []
    for name in list_models():
        info = model_info(name)
        model = create_model(name)
        rows.append(
            {
                "name": name,
                "parameters": count_parameters(model),
                "num_classes": info.num_classes,
                "in_channels": info.in_channels,
                "input_size": info.input_size,
                "spec": getattr(model, "spec", None),
                "description": info.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'name':<22}{'parameters':>13}  {'classes':>7}  {'input':>9}  description")
        for r in rows:
            size = f"{r['in_channels']}x{r['input_size']}"
            print(
                f"{r['name']:<22}{r['parameters']:>13,}  {r['num_classes']:>7}  {size:>9}  "
                f"{r['description']}"
            )
    return 0


# ------------------------------------------------------------------------ subcommands
# Each entry adds one subcommand to the parser; its handler is set with set_defaults(run=...).
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_models]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgnet", description="MgNet: one multigrid cycle, a CNN and a PDE solver."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("mgnet: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, FileNotFoundError, NotADirectoryError, RuntimeError) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"mgnet {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
