"""The README's examples run as written: its python blocks (in order, one namespace) and its
`mgnet ...` command lines (all parse with the real parser; the slow test runs them)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mgnet.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", TEXT, re.S)
    assert blocks, "the README has no python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)


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
    build_parser().parse_args(shlex.split(line)[1:])


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
