"""``mgnet models``: the registered models with their parameter counts."""

from __future__ import annotations

import argparse

from mgnet.cli import emit

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the registered models and their parameter counts",
        description="List registered models. Any MgNet spec string, e.g. "
        "'mgnet[2,2,2,2]-256-Bl', is accepted wherever a model name is.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mgnet.models import count_parameters_of, list_models, model_info

    rows = []
    for name in list_models():
        info = model_info(name)
        rows.append(
            {
                "name": name,
                "kind": info.kind,
                "parameters": count_parameters_of(name),  # on the meta device: no allocation
                "num_classes": info.num_classes,
                "in_channels": info.in_channels,
                "out_channels": info.out_channels,
                "input_size": info.input_size,
                "spec": info.spec,
                "description": info.description,
            }
        )
    table = [("name", "parameters", "outputs", "input", "description")]
    for r in rows:
        size = f"{r['in_channels']}x{r['input_size']}"
        outputs = (
            str(r["num_classes"]) if r["kind"] == "classifier" else f"{r['out_channels']}-field"
        )
        table.append((r["name"], f"{r['parameters']:,}", outputs, size, r["description"]))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = []
    for row in table:  # the name left-aligned, the numbers right-aligned, then the text
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:4], widths[1:])]
        lines.append("  ".join([*cells, row[4]]))
    emit(rows, lines, args.json)
    return 0
