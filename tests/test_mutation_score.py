"""benchmarks/mutation_score.py keeps working: its mutation operators, its mutants of the
real packages (valid code, each a real change), and a run on a tiny project whose killed,
timed-out, surviving and equivalent mutants are known in advance."""

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "mutation_score.py"


@pytest.fixture(scope="module")
def ms():
    spec = importlib.util.spec_from_file_location("mutation_score", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_score"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["mutation_score"]


SNIPPET = '''
def f(a, b, xs, c=None):
    """A docstring with 1 + 2 in it."""
    if a < b and not xs:
        xs.append(a)
    if c is None:
        raise ValueError(f"c: got {a + 1}")
    return (a + b) * 2.0, xs[a:]
'''


def test_operators_on_a_snippet(ms):
    changes = {(m.kind, m.change) for m in ms.module_mutants(SNIPPET, "core/x.py", "core")}
    assert changes == {
        ("boolop", "a < b and (not xs) -> a < b or not xs"),
        ("compare", "a < b -> a <= b"),
        ("compare", "a < b -> a >= b"),
        ("not", "not xs -> xs"),
        ("remove", "xs.append(a) -> pass"),
        ("compare", "c is None -> c is not None"),
        ("remove", "raise ValueError(f'c: got {a + 1}') -> pass"),
        ("return", "return ((a + b) * 2.0, xs[a:]) -> return None"),
        ("order", "((a + b) * 2.0, xs[a:]) -> (xs[a:], (a + b) * 2.0)"),
        ("binop", "(a + b) * 2.0 -> (a + b) / 2.0"),
        ("binop", "a + b -> a - b"),
        ("constant", "2.0 -> 4.0"),
        ("slice", "a: -> a + 1:"),
    }, "docstrings, f-strings and error messages are never mutated; the rest is"


def test_mutants_of_core_are_valid_changes(ms, capsys):
    source = (ROOT / "src" / "mgnet" / "core" / "cycle.py").read_text()
    mutants = ms.module_mutants(source, "core/cycle.py", "core")
    assert len(mutants) > 50
    assert len({m.id for m in mutants}) == len(mutants)
    original = ast.dump(ast.parse(source))
    for m in mutants[::7]:
        assert ast.dump(ast.parse(ms.mutated_source(source, m))) != original, m.id
    assert ms.main(["--package", "core", "--list"]) == 0
    listing = capsys.readouterr().out
    assert f"# core: {len(mutants)} mutants in 1 modules" in listing
    assert "#   core/cycle.py: tests tests/test_core" in listing


def test_every_package_has_tests(ms):
    for package in ms.PACKAGES:
        tests = ms.select_tests(ROOT, f"{package}/anything_new.py")
        assert tests != ["tests"] and all((ROOT / t).is_file() for t in tests), package


TINY = """
def add(a, b):
    return a + b


def spin(n):
    while n > 0:
        n = n - 1
    return n


def triple(x):
    return x * 3
"""

TINY_TESTS = """
from mgnet.core.arith import add, spin


def test_add():
    assert add(2, 3) == 5


def test_spin():
    assert spin(3) == 0
"""


def test_run_on_a_tiny_project(ms, tmp_path):
    """Killed, timed out, survived and equivalent, each where expected; the score leaves
    the equivalent mutant out, and the project's own files are not touched."""
    core = tmp_path / "src" / "mgnet" / "core"
    core.mkdir(parents=True)
    (core.parent / "__init__.py").write_text("")
    (core / "__init__.py").write_text("")
    (core / "arith.py").write_text(TINY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_core_arith.py").write_text(TINY_TESTS)
    ids = {m.change: m.id for m in ms.module_mutants(TINY, "core/arith.py", "core")}
    expected = {
        "a + b -> a - b": "killed",
        "n > 0 -> n >= 0": "killed",
        "n - 1 -> n + 1": "timeout",  # n grows for ever
        "x * 3 -> x / 3": "survived",
        "3 -> 4": "equivalent",
    }
    (tmp_path / "equivalent.txt").write_text(
        f"# a comment\ncore/arith.py:{ids['3 -> 4'].split(':')[1]} | 3 -> 4 | untested\n"
    )
    out = tmp_path / "out.json"
    args = ["--root", str(tmp_path), "--timeout", "4", "--preload", "pytest"]
    args += ["--equivalent", str(tmp_path / "equivalent.txt"), "--json", str(out)]
    for change in expected:
        args += ["--mutant", ids[change]]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert {m["original"] + " -> " + m["mutated"]: m["status"] for m in result["mutants"]} == (
        expected
    )
    assert result["scores"]["core"]["score"] == pytest.approx(3 / 4)
    killed = [m for m in result["mutants"] if m["status"] == "killed"]
    assert {m["killed_by"].split(" - ")[0] for m in killed} == {
        "FAILED tests/test_core_arith.py::test_add",
        "FAILED tests/test_core_arith.py::test_spin",
    }
    assert "equivalent: untested" in run.stdout and "x * 3" in run.stdout
    assert (core / "arith.py").read_text() == TINY
