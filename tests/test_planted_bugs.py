"""benchmarks/planted_bugs.py still applies to today's source: every planted edit finds
its text exactly once, changes the code (not a comment), and names tests that exist. The
test selections themselves are not run here (that is the benchmark)."""

import ast
import importlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "planted_bugs.py"


@pytest.fixture(scope="module")
def pb():
    """The script, imported by name as it imports its driver (mutation_score); sys.path
    and sys.modules are as they were afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(SCRIPT.parent))
        for name in ("planted_bugs", "mutation_score"):
            mp.setitem(sys.modules, name, None)  # undone: restored, or removed if new
            del sys.modules[name]
        yield importlib.import_module("planted_bugs")


def test_every_planted_edit_applies_to_todays_source(pb):
    assert len(pb.BUGS) == 10 and len({b.name for b in pb.BUGS}) == 10
    for bug in pb.BUGS:
        original = (ROOT / bug.file).read_text()
        planted = pb.planted_source(ROOT, bug)  # raises StaleEdit unless found exactly once
        assert original.count(bug.old) == 1, bug.name
        assert ast.dump(ast.parse(planted)) != ast.dump(ast.parse(original)), bug.name
        assert bug.tests and pb.missing_tests(ROOT, bug) == [], bug.name
        assert all(t.startswith("tests/test_") and "::test_" in t for t in bug.tests), bug.name


def test_a_stale_edit_stops_with_a_clear_message(pb, tmp_path, capsys):
    module = tmp_path / "src" / "mgnet" / "core" / "cycle.py"
    module.parent.mkdir(parents=True)
    bug = pb.Bug("twice", "", "src/mgnet/core/cycle.py", "x = 1", "x = 2", ("tests/test_a.py::t",))
    with pytest.raises(pb.StaleEdit, match="twice: src/mgnet/core/cycle.py does not exist"):
        pb.planted_source(tmp_path, bug)
    module.write_text("x = 1\ny = 2\nx = 1\n")
    with pytest.raises(pb.StaleEdit, match=r"contains the text to replace 2 times, expected once"):
        pb.planted_source(tmp_path, bug)
    module.write_text("x = 1\n")
    assert pb.planted_source(tmp_path, bug) == "x = 2\n"
    assert pb.missing_tests(tmp_path, bug) == ["tests/test_a.py::t"]
    with pytest.raises(pb.StaleEdit, match="is not under src/mgnet/"):
        pb.planted_source(tmp_path, pb.Bug("out", "", "setup.py", "a", "b", ()))
    # the command line: exit status 2 and one line naming the bug, before anything runs
    assert pb.main(["--root", str(tmp_path), "--bug", "tie_rule"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("planted_bugs: tie_rule: src/mgnet/train/task.py does not exist")
    assert pb.main(["--list"]) == 0
    assert (
        "tie_rule: a tie of validation accuracy keeps the earlier epoch" in capsys.readouterr().out
    )


TINY = "def add(a, b):\n    return a + b\n\n\ndef triple(x):\n    return 3 * x\n"
TINY_TESTS = "from mgnet.core.arith import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def test_a_run_on_a_tiny_project(pb, tmp_path, monkeypatch):
    """A caught and a surviving bug, each where expected: exit status 1, the failing test
    named, the project's own file untouched."""
    files = {"src/mgnet/__init__.py": "", "src/mgnet/core/__init__.py": ""}
    files |= {"src/mgnet/core/arith.py": TINY, "tests/test_arith.py": TINY_TESTS}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    test = ("tests/test_arith.py::test_add",)
    bugs = (
        pb.Bug("minus", "", "src/mgnet/core/arith.py", "a + b", "a - b", test),
        pb.Bug("untested", "", "src/mgnet/core/arith.py", "3 * x", "4 * x", test),
    )
    monkeypatch.setattr(pb, "BUGS", bugs)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # main sets them for the test runs
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    out = tmp_path / "out.json"
    assert pb.main(["--root", str(tmp_path), "--json", str(out), "--timeout", "60"]) == 1
    result = {b["name"]: b for b in json.loads(out.read_text())["bugs"]}
    assert result["minus"]["status"] == "caught"
    assert result["minus"]["caught_by"] == ["tests/test_arith.py::test_add"]
    assert result["untested"]["status"] == "NOT caught" and result["untested"]["caught_by"] == []
    assert [r["baseline"] for b in result.values() for r in b["runs"]] == ["passed", "passed"]
    assert (tmp_path / "src/mgnet/core/arith.py").read_text() == TINY
