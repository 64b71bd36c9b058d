"""The README's examples run as written: its python blocks (in order, one namespace; every
`# -> LINE` comment is a line the block prints) and its `mgnet ...` command lines (all parse
with the real parser; the slow test runs them); its table of parameter counts is the
registry's."""

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgnet.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()


def test_readme_python_blocks_run_and_print_what_they_say(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", TEXT, re.S)
    assert blocks, "the README has no python example"
    expected = [line for b in blocks for line in re.findall(r"^# -> (.*)$", b, re.M)]
    # the iteration counts, factors, errors and parameter counts the README quotes
    assert len(expected) >= 6
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    printed = iter(out.getvalue().splitlines())
    for line in expected:  # in order: each quoted line is printed, after the one before
        assert any(p == line for p in printed), f"the README says {line!r}; not printed"


def test_readme_parameter_table_is_the_registry():
    """Every count in the Models table, e.g. `8,278,794 (10 classes), 8,301,924 (100)`,
    is what the registry builds (counted on the meta device)."""
    from mgnet.models import count_parameters, create_model

    rows = re.findall(r"^\| `(\w+)`.*\| ([^|]*[\d,]{7,}[^|]*) \|$", TEXT, re.M)
    assert {name for name, _ in rows} >= {"mgnet_cifar", "mgnet_imagenet", "resnet18"}
    checked = 0
    for name, cell in rows:
        for count, classes in re.findall(r"([\d,]{7,})(?: \((\d+)(?: classes)?\))?", cell):
            with torch.device("meta"):
                model = create_model(name, num_classes=int(classes) if classes else None)
            assert f"{count_parameters(model):,}" == count, (name, classes)
            checked += 1
    assert checked >= 7


def readme_commands() -> list[str]:
    """`mgnet ...` lines of the README's plain code blocks, comments stripped."""
    lines, fence = [], None
    for raw in TEXT.splitlines():
        if raw.startswith("```"):
            fence = None if fence is not None else raw[3:].strip()
            continue
        line = raw.split("  #")[0].strip()
        if fence == "" and line.startswith("mgnet "):
            lines.append(line)
    return lines


COMMANDS = readme_commands()


def test_readme_shows_every_subcommand():
    shown = {shlex.split(c)[1] for c in COMMANDS}
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    missing = set(sub.choices) - shown
    assert not missing, f"subcommands without a README command: {sorted(missing)}"


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_parses(line):
    try:
        build_parser().parse_args(shlex.split(line)[1:])
    except SystemExit as e:  # --help and --version print and exit 0
        assert e.code == 0 and ("--help" in line or "--version" in line), line


@pytest.mark.slow
def test_readme_commands_run(tmp_path):
    """Every README command that needs no downloaded data set, in order, in one folder."""
    mgnet = Path(sys.executable).with_name("mgnet")
    for line in COMMANDS:
        if "DIR" in line or "RUN" in line:
            continue
        args = shlex.split(line)
        proc = subprocess.run(
            [str(mgnet), *args[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
