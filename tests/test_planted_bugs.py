"""benchmarks/planted_bugs.py still applies to today's source: every planted edit finds
its text exactly once, changes the code (not a comment), and names tests that exist. The
test selections themselves are not run here (that is the benchmark)."""

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "planted_bugs.py"


@pytest.fixture(scope="module")
def pb():
    path, had = list(sys.path), "mutation_score" in sys.modules
    spec = importlib.util.spec_from_file_location("planted_bugs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["planted_bugs"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = path
        del sys.modules["planted_bugs"]
        if not had:  # the driver planted_bugs imports
            sys.modules.pop("mutation_score", None)


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
