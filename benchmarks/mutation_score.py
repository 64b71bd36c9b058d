"""Mutation score of mgnet's numerical packages: would the tests notice a plausible bug?

Every mutant is one small change to one source line (an operator swapped, a comparison
flipped or shifted by one, a constant changed, a condition negated, ``and``/``or``
swapped, a statement or an in-place update removed, a return value replaced by ``None``,
a slice bound moved, the elements of a tuple or list reversed, a reduction, pooling or
fill swapped for its twin such as mean/sum, max/min, average/max pooling).

Each mutant is written into a temporary copy of ``src/`` (the working tree is never
touched) and the tests that concern the mutated module are run on it (``TESTS`` below
maps packages and modules to test files). A failing test kills the mutant; a run that
passes lets it survive; a run longer than ``--timeout`` counts as killed by timeout
(reported apart). The score is

    (killed + timeouts) / (mutants - equivalent survivors)

where a survivor listed in ``benchmarks/mutation_equivalent.txt`` (a change that cannot
alter any result, with the reason) is shown with its reason and left out of the
denominator. Not part of CI: a full run takes minutes to hours on a small machine.

Run from the repository root with the project's environment (the ``dev`` extra)::

    python benchmarks/mutation_score.py --package core --sample 20       # quick score
    python benchmarks/mutation_score.py --package core                   # every mutant
    python benchmarks/mutation_score.py --package all --sample 60 --seed 0 --json out.json
    python benchmarks/mutation_score.py --package stencils --list        # mutants only
    python benchmarks/mutation_score.py --mutant core/cycle.py:294:1     # rerun one mutant
    python benchmarks/mutation_score.py --package core --tests tests/test_core.py

``--sample N`` draws N mutants per package (reproducible with ``--seed``); ``-j N`` runs
N mutants at once (default 1). Each mutant runs in a child forked from this process after
torch, NumPy, SciPy and pytest are imported once (``--preload``), which saves their import
per mutant; ``--no-fork`` starts a fresh interpreter per mutant instead. The tests of a
selection are first run on the unmutated copy: a selection that fails there is reported
and its mutants are skipped. ``# pragma: no mutate`` on a line exempts it.

How the tools were chosen: cosmic-ray applies each mutation to the working tree in place,
and mutmut 3 selects tests by its own coverage pass over the whole suite, mutates only
inside functions, and mutates every string (error messages); neither fits a per-module
test map on a 2-core machine shared by several jobs, so this is a small ``ast`` driver.

Scores measured on 2026-11-27 on a 2-core VM shared with other jobs (``-j 1``; seconds
per mutant are wall clock and follow the load, so compare them within one block only).

Branch source of commit 047edfc (before the merge of the other helpers' work)::

    package    mutants      killed timeout survived  score    s/mutant  options
    before: the tests of 047edfc (driver of commit aa98a0d)
    core       125 (all)        99       0       26   79.2 %    5.5     --package core
    stencils    60 of 967       44       0       16   73.3 %    9.2     --sample 60 --seed 0
    multigrid   60 of 496       41       1       18   70.0 %   13.6     --sample 60 --seed 0
    models      60 of 410       37       0       23   61.7 %    7.7     --sample 60 --seed 0
    after: tests/test_core_mutants.py added
    core       125 (all)       125       0        0  100.0 %    1.5     --package core

Merged source of commit ec0a0c9 (MgCycle gained ``fmg``; ``visit`` became ``_visit``;
driver of commit 2d9f19d, whose test map covers the new modules)::

    package    mutants      killed timeout survived equiv  score    s/mutant  options
    core       148 (all)        99       0       48     1   67.3 %    1.8     (1)
    core       148 (all)       147       0        0     1  100.0 %    1.2     --package core
    stencils    60 of 1385      51       0        9     0   85.0 %    2.2     (2)
    multigrid   60 of 2793      30       1       29     0   51.7 %    7.1     (2)
    models      60 of 933       44       0       15     1   74.6 %   12.6     (2)

(1) ``--package core --tests tests/test_core.py tests/test_multigrid_inplace.py``: the
    merged suite without tests/test_core_mutants.py, the "before" of core.
(2) ``--package NAME --sample 60 --seed 0``, the merged suite.

Between the two blocks the operators changed a little (a tuple that is a statement, or
the right side of ``in``, is no longer reversed), so the first block's stencils sample is
not drawn again by this driver. Timings: the machine was quieter for the second block.

Multigrid, source of commit dd80ef4 (main after the darcy/operator merge; the multigrid
sources are unchanged up to 1b9259b). The driver of commit 58c305f runs
tests/test_multigrid_mutants.py first for the geometric modules, and an equivalent entry
may name one mutant of a line (``LINE:N``). Load: another helper's mutation runs at the
same time, so s/mutant is not comparable with the blocks above::

    package    mutants      killed timeout survived equiv  score    s/mutant  options
    before: the tests of dd80ef4 (1b9259b for seed 1)
    multigrid   60 of 2729      27       3       30     0   50.0 %   11.6     --seed 0
    multigrid   60 of 2729      38       3       19     0   68.3 %   11.0     --seed 1
    after: tests/test_multigrid_mutants.py, test_amg_mutants.py, test_learned_mutants.py
    multigrid   60 of 2729      54       2        0     4  100.0 %   13.7     --seed 0 (3)
    multigrid   60 of 2729      41       3       16     0   73.3 %   13.4     --seed 1 (4)
    multigrid   60 of 2729      51       3        3     3   94.7 %    8.9     --seed 1 (5)

(3) ``--package multigrid --sample 60 --seed 0``: the tests written for this sample's 30
    survivors; 4 of them are listed as equivalent.
(4) The same tests on the seed-1 sample, measured before any test was written for it: the
    tests fitted seed 0 more than the package (2729 mutants).
(5) After tests for seed 1's survivors (commit 7085642); its 16 survivors rerun with
    ``--mutant`` (s/mutant of those 16), the other 44 as in (4). Left surviving: the
    index dtype of T flipped (aggregation.py:194: int64 below 2^31 entries, int32 above;
    the values differ only for a T of 2^31 entries, beyond a test), and the float64 range
    of the right-hand side scaling moved to 2^-401 (multilevel.py:395) or a batch with a
    zero b scaled by powers of two (multilevel.py:396), which change bits only where an
    unscaled solve near the range's edge would underflow: not equivalent for every input,
    and not testable in reason.

stencils/models, second pass (source of commit dd80ef4, then this branch: StencilOperator's
shape check wired into ``forward``, tests/test_stencils_mutants.py, tests/test_models_mutants.py
and ten more equivalents)::

    package    mutants      killed timeout survived equiv  score    s/mutant  options
    stencils    60 of 3290      39       0       21     0   65.0 %   25.7     (3) before
    stencils    60 of 3290      54       0        0     6  100.0 %   12.1     (3) after (4)
    models      60 of 936       41       0       19     0   68.3 %   26.4     (3) before (5)
    models      60 of 936       56       0        4     0   93.3 %   10.3     (3) after (4)
    stencils    60 of 3288      47       0       12     1   79.7 %   16.1     (6) first run
    stencils    60 of 3288      53       0        3     4   94.6 %   13.3     (6) after (4)
    models      60 of 936       53       0        7     0   88.3 %    9.8     (6) first run
    models      60 of 936       56       0        4     0   93.3 %   14.7     (6) after (4)

(3) ``--sample 60 --seed 0``; the sample differs from (2)'s: the packages gained modules.
(4) the before's survivors rerun with ``--mutant`` (the tests were only added to, so a
    killed mutant stays killed; the stencils ids past the new line of operators.py moved
    down one line). Models left: three MgNO details (``_nu_pair``'s order, the number of
    sides in its error message, a constant of its activation estimate) and one constant
    of UNet's activation estimate.
(5) ``--tests`` with the five test files of the models' selection at dd80ef4, since
    tests/test_models_mutants.py, which ``test_models*.py`` now matches, was already
    written.
(6) ``--sample 60 --seed 1`` on this branch, a check of the seed-0 tests on a sample they
    were not written for ("first run"); then tests for its survivors and a rerun of those
    (4). Stencils left: a branch taken only on CUDA (smoothers.py, ``colour_update_``),
    the Cholesky test's tolerance boundary (``<=`` -> ``<``) and one index of
    ``_only_truncated``; models left: four constants of activation estimates (MgNet's stem,
    MgNO, UNet), which the tests check only within a factor two.

FMG's cubic interpolation, added after these blocks (``CubicInterpolation`` in
stencils/transfers.py and its kernel ``_cubic_taps`` / ``_cubic_line`` / ``cubic_axis`` in
stencils/_compiled.py: 479 mutants on their lines): 30 drawn at random (Python's
``random.sample``, seed 0), each run alone with ``--mutant ID --tests
tests/test_fmg_interpolation.py``: 30 killed, none survived.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import datetime
import fnmatch
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = "mgnet"  # the package under src/ whose subpackages are mutated
PACKAGES = ("core", "stencils", "multigrid", "models")
EQUIVALENT = Path(__file__).resolve().parent / "mutation_equivalent.txt"
PRELOAD = "torch,numpy,scipy.sparse,scipy.sparse.linalg,pytest"
PRAGMA = "pragma: no mutate"

# Tests that concern each package (key "pkg") or module (key "pkg/file.py"), as globs
# relative to tests/, in the order they run (the first failure stops the run, so the
# most specific and fastest files come first). A module runs tests/test_<module>*.py
# first, then its own entry or else its package's; where none of these files exists,
# tests/test_<pkg>*.py, and failing that every test.
_AMG = ["test_amg_operators.py", "test_amg_setup.py", "test_amg.py", "test_amg*.py"]
_GEOMETRIC = ["test_multigrid_mutants.py", "test_solver_references.py", "test_multilevel.py"]
_GEOMETRIC += ["test_multigrid_hardening.py"]
_GEOMETRIC += ["test_multigrid.py", "test_multigrid_inplace.py", "test_theory_multigrid.py"]
TESTS: dict[str, list[str]] = {
    "core": ["test_core*.py", "test_multigrid_inplace.py"],
    "stencils": ["test_stencils*.py", "test_solver_references.py"]
    + ["test_operator_interpolation.py", "test_multigrid.py", "test_multigrid_inplace.py"]
    + ["test_fmg_interpolation.py"],
    "stencils/_compiled.py": ["test_kernels.py", "test_stencils*.py", "test_multigrid_inplace.py"]
    + ["test_fmg_interpolation.py"],
    "multigrid": _GEOMETRIC,
    "multigrid/algebraic.py": _AMG,
    "multigrid/aggregation.py": _AMG,
    "multigrid/matrices.py": _AMG,
    "multigrid/sparse.py": _AMG,
    "multigrid/_amg_compiled.py": _AMG,
    "multigrid/learned.py": ["test_learned*.py"],
    "models": ["test_models_reference.py", "test_models.py", "test_models_operators.py"]
    + ["test_theory.py", "test_models*.py"],
}


# ----------------------------------------------------------------------------- mutants


@dataclass
class Mutant:
    """One change to one line: ``original`` -> ``mutated`` at ``module``:``line``."""

    id: str  # "pkg/file.py:line:n", n counting the mutants of that line from 1
    package: str
    module: str  # "pkg/file.py", relative to src/<TOP>
    line: int
    col: int
    kind: str
    original: str
    mutated: str
    source_line: str
    node_index: int = field(repr=False, default=-1)
    status: str = "pending"  # killed | timeout | survived | equivalent | error | skipped
    seconds: float = 0.0
    killed_by: str = ""
    reason: str = ""

    @property
    def change(self) -> str:
        return f"{self.original} -> {self.mutated}"


_BINOP_SWAP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.MatMult: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitOr,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
}
# comparison -> its boundary shift and its negation
_CMP_SWAP = {
    ast.Lt: (ast.LtE, ast.GtE),
    ast.LtE: (ast.Lt, ast.Gt),
    ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}

# names that do the same kind of thing differently: reductions, pooling, constant fills
_PAIRS = [("mean", "sum"), ("max", "min"), ("amax", "amin"), ("argmax", "argmin")]
_PAIRS += [("maximum", "minimum"), ("floor", "ceil"), ("zeros", "ones")]
_PAIRS += [("zeros_like", "ones_like"), ("adaptive_avg_pool2d", "adaptive_max_pool2d")]
for _d in (1, 2, 3):
    _PAIRS += [(f"AvgPool{_d}d", f"MaxPool{_d}d"), (f"avg_pool{_d}d", f"max_pool{_d}d")]
    _PAIRS += [(f"AdaptiveAvgPool{_d}d", f"AdaptiveMaxPool{_d}d")]
_ATTR_SWAP = {a: b for pair in _PAIRS for a, b in (pair, pair[::-1])}
_NAME_SWAP = {"max": "min", "min": "max"}  # builtins


def _children(node: ast.AST) -> Iterator[tuple[str, int | None, ast.AST]]:
    for name, value in ast.iter_fields(node):
        if isinstance(value, ast.AST):
            yield name, None, value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, ast.AST):
                    yield name, i, item


def _number(tree: ast.AST) -> list[tuple[ast.AST, ast.AST | None, str, int | None]]:
    """Every node in a fixed order with its parent and place: the same order on a copy."""
    out: list[tuple[ast.AST, ast.AST | None, str, int | None]] = [(tree, None, "", None)]
    i = 0
    while i < len(out):
        node = out[i][0]
        for name, index, child in _children(node):
            out.append((child, node, name, index))
        i += 1
    return out


def _is_docstring(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _skipped_subtrees(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: annotations, f-strings, raise arguments (error messages),
    docstrings, ``__all__``, ``if TYPE_CHECKING:`` blocks."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif isinstance(node, ast.JoinedStr) or _is_docstring(node):
            roots.append(node)
        elif isinstance(node, ast.Raise):
            roots.extend(n for n in (node.exc, node.cause) if n is not None)
        elif (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            or isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test)
        ):
            roots.append(node)
    return {id(n) for root in roots for n in ast.walk(root)}


def _const_mutations(value: object) -> list[object]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [1] if value == 0 else [0] if value == 1 else [value + 1]
    if isinstance(value, float):
        return [1.0] if value == 0.0 else [value * 2.0]
    return []


def _is_str(node: ast.AST) -> bool:
    if isinstance(node, ast.IfExp):
        return _is_str(node.body) or _is_str(node.orelse)
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


# (kind, make, focus): ``make`` returns the replacement of (a copy of) the node; the
# change is shown on the node's attribute ``focus`` (the whole node where it is None)
Mutation = tuple[str, Callable[[ast.AST], ast.AST], "str | None"]


def _mutations(node: ast.AST, parent: ast.AST | None) -> list[Mutation]:
    """The mutations of one node."""
    out: list[Mutation] = []

    def with_attr(attr: str, value_of: Callable[[ast.AST], object]) -> Callable:
        def make(n: ast.AST) -> ast.AST:
            setattr(n, attr, value_of(n))
            return n

        return make

    if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
        if not (_is_str(node.left) or _is_str(node.right)):
            new = _BINOP_SWAP[type(node.op)]
            out.append(("binop", with_attr("op", lambda n, new=new: new()), None))
    elif isinstance(node, ast.AugAssign) and type(node.op) in _BINOP_SWAP:
        new = _BINOP_SWAP[type(node.op)]
        out.append(("augassign", with_attr("op", lambda n, new=new: new()), None))
    elif isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for new in _CMP_SWAP.get(type(op), ()):

                def make(n: ast.AST, i: int = i, new: type = new) -> ast.AST:
                    n.ops = [new() if j == i else o for j, o in enumerate(n.ops)]
                    return n

                out.append(("compare", make, None))
    elif isinstance(node, ast.Constant) and not isinstance(node.value, str):
        for new in _const_mutations(node.value):
            out.append(("constant", with_attr("value", lambda n, new=new: new), None))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        kind = "not" if isinstance(node.op, ast.Not) else "negation"
        out.append((kind, lambda n: n.operand, None))
    elif isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        out.append(("boolop", with_attr("op", lambda n, new=new: new()), None))
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append(("return", with_attr("value", lambda n: ast.Constant(None)), None))
    elif isinstance(node, ast.Attribute) and node.attr in _ATTR_SWAP:
        if isinstance(node.ctx, ast.Load):
            out.append(("name", with_attr("attr", lambda n: _ATTR_SWAP[n.attr]), None))
    elif isinstance(node, ast.Name) and node.id in _NAME_SWAP:
        if isinstance(node.ctx, ast.Load):
            out.append(("name", with_attr("id", lambda n: _NAME_SWAP[n.id]), None))
    elif isinstance(node, ast.Break):
        out.append(("loop", lambda n: ast.Continue(), None))
    elif isinstance(node, ast.Continue):
        out.append(("loop", lambda n: ast.Break(), None))
    if isinstance(node, (ast.If, ast.While, ast.IfExp)) and not isinstance(
        node.test, (ast.Compare, ast.BoolOp, ast.UnaryOp)
    ):
        negate = with_attr("test", lambda n: ast.UnaryOp(ast.Not(), n.test))
        out.append(("condition", negate, "test"))
    if (
        isinstance(node, (ast.Tuple, ast.List))
        and isinstance(node.ctx, ast.Load)
        and len({ast.unparse(e) for e in node.elts}) > 1
        and not isinstance(parent, (ast.Subscript, ast.Expr))  # an index; a, b as a statement
        and not _is_membership(node, parent)  # x in (a, b): the order cannot matter
    ):
        out.append(("order", with_attr("elts", lambda n: n.elts[::-1]), None))
    removable = (
        (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and not _is_super(node))
        or isinstance(node, (ast.AugAssign, ast.Raise))
        or (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript))
    )
    if removable:
        out.append(("remove", lambda n: ast.Pass(), None))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr.endswith("_")
        and not node.func.attr.startswith("_")
        and not isinstance(parent, ast.Expr)
    ):
        out.append(("inplace", lambda n: n.func.value, None))  # x.add_(y) -> x
    if isinstance(node, ast.Slice):
        for attr in ("lower", "upper"):
            bound = getattr(node, attr)
            if bound is not None and not isinstance(bound, (ast.Constant, ast.UnaryOp)):
                make = with_attr(
                    attr,
                    lambda n, attr=attr: ast.BinOp(getattr(n, attr), ast.Add(), ast.Constant(1)),
                )
                out.append(("slice", make, None))
    return out


def _is_membership(node: ast.AST, parent: ast.AST | None) -> bool:
    if not isinstance(parent, ast.Compare):
        return False
    return any(
        isinstance(op, (ast.In, ast.NotIn)) and right is node
        for op, right in zip(parent.ops, parent.comparators)
    )


def _is_super(node: ast.Expr) -> bool:
    """``super().__init__(...)``: removing it only breaks the class, never a result."""
    func = node.value.func
    return isinstance(func, ast.Attribute) and "super()" in ast.unparse(func.value)


def _one_line(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _replace(numbered: list, index: int, new: ast.AST) -> None:
    node, parent, name, i = numbered[index]
    if new is node:
        return
    if i is None:
        setattr(parent, name, new)
    else:
        getattr(parent, name)[i] = new


def module_mutants(source: str, module: str, package: str) -> list[Mutant]:
    """Every mutant of one module's source, in source order."""
    tree = ast.parse(source)
    lines = source.splitlines()
    skipped = _skipped_subtrees(tree)
    found: list[Mutant] = []
    for index, (node, parent, _, _) in enumerate(_number(tree)):
        if id(node) in skipped or not hasattr(node, "lineno"):
            continue
        line_text = lines[node.lineno - 1]
        if PRAGMA in line_text:
            continue
        for n_mut, (kind, make, focus) in enumerate(_mutations(node, parent)):
            mutated = make(copy.deepcopy(node))
            before = node if focus is None else getattr(node, focus)
            after = mutated if focus is None else getattr(mutated, focus)
            original, text = ast.unparse(before), ast.unparse(after)
            if text == original:
                continue
            found.append(
                Mutant(
                    id="",
                    package=package,
                    module=module,
                    line=node.lineno,
                    col=node.col_offset,
                    kind=kind,
                    original=_one_line(original),
                    mutated=_one_line(text),
                    source_line=line_text.strip(),
                    node_index=index * 100 + n_mut,
                )
            )
    found.sort(key=lambda m: (m.line, m.col, m.node_index))
    per_line: dict[int, int] = {}
    for m in found:
        per_line[m.line] = per_line.get(m.line, 0) + 1
        m.id = f"{module}:{m.line}:{per_line[m.line]}"
    return found


def mutated_source(source: str, mutant: Mutant) -> str:
    """The module's source with ``mutant`` applied (regenerated from the AST)."""
    tree = ast.parse(source)
    numbered = _number(tree)
    index, n_mut = divmod(mutant.node_index, 100)
    node, parent = numbered[index][0], numbered[index][1]
    make = _mutations(node, parent)[n_mut][1]
    _replace(numbered, index, make(node))
    ast.fix_missing_locations(tree)
    text = ast.unparse(tree)
    compile(text, mutant.module, "exec")
    return text


def discover(root: Path, packages: list[str]) -> dict[str, list[Mutant]]:
    """Mutants of every ``*.py`` file under ``src/<TOP>/<package>`` (found, not listed)."""
    base = root / "src" / TOP
    out: dict[str, list[Mutant]] = {}
    for package in packages:
        mutants: list[Mutant] = []
        for path in sorted((base / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            module = path.relative_to(base).as_posix()
            mutants += module_mutants(path.read_text(), module, package)
        out[package] = mutants
    return out


# ----------------------------------------------------------------------- test selection


def select_tests(root: Path, module: str, table: dict[str, list[str]] = TESTS) -> list[str]:
    """Test files (relative to ``root``) for a module, by ``table`` with the fallbacks."""
    tests = root / "tests"
    package, stem = module.split("/")[0], Path(module).stem
    own = [] if stem == "__init__" else [f"test_{stem}*.py"]
    chosen = _expand(tests, own + (table.get(module) or table.get(package) or []))
    if not chosen:
        chosen = _expand(tests, [f"test_{package}*.py"])
    if not chosen:
        return ["tests"]
    return [str(Path("tests") / name) for name in chosen]


def _expand(tests: Path, patterns: list[str]) -> list[str]:
    names = sorted(p.name for p in tests.glob("test_*.py")) if tests.is_dir() else []
    out: list[str] = []
    for pattern in patterns:
        out += [n for n in names if fnmatch.fnmatch(n, pattern) and n not in out]
    return out


# -------------------------------------------------------------------------- equivalents


@dataclass
class Equivalent:
    module: str
    line: int
    change: str
    reason: str
    used: bool = False
    number: int | None = None  # N of the id pkg/file.py:LINE:N: that mutant of the line only


def read_equivalents(path: Path) -> list[Equivalent]:
    """``pkg/file.py:LINE | original -> mutated | reason`` per line (``LINE:N``, the mutant's
    id, where a line has the same change twice); ``#`` starts a comment."""
    out = []
    if not path.is_file():
        return out
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            where, rest = raw.split(" | ", 1)
            change, reason = rest.rsplit(" | ", 1)
            module, _, pos = where.strip().partition(":")
            line, _, index = pos.partition(":")
            n = int(index) if index else None
            out.append(Equivalent(module, int(line), change.strip(), reason.strip(), number=n))
        except ValueError:
            sys.exit(f"{path}:{number}: expected 'pkg/file.py:LINE | change | reason'")
    return out


def match_equivalent(mutant: Mutant, table: list[Equivalent], all_mutants: list[Mutant]):
    """The entry for ``mutant``: same module, change and line; or, when the line moved,
    the same module and change where that change occurs once among ``all_mutants`` (every
    mutant of the module, not only a sample's)."""
    for e in table:
        if (e.module, e.line, e.change) == (mutant.module, mutant.line, mutant.change) and (
            e.number is None or mutant.id == f"{e.module}:{e.line}:{e.number}"
        ):
            return e
    for e in table:
        if (e.module, e.change) == (mutant.module, mutant.change):
            same = [m for m in all_mutants if (m.module, m.change) == (e.module, e.change)]
            if len(same) == 1:
                return e
    return None


# ------------------------------------------------------------------------------ running


class Slot:
    """A private copy of ``src/`` in which one mutant at a time is written."""

    def __init__(self, root: Path, where: Path) -> None:
        self.src = where / "src"
        shutil.copytree(
            root / "src",
            self.src,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
        )
        self.saved: tuple[Path, str] | None = None

    def apply(self, module: str, text: str) -> None:
        path = self.src / TOP / module
        self.saved = (path, path.read_text())
        path.write_text(text)

    def restore(self) -> None:
        if self.saved is not None:
            path, text = self.saved
            path.write_text(text)
            self.saved = None


@dataclass
class Job:
    slot: Slot
    mutant: Mutant | None
    started: float
    log: Path
    pid: int = 0
    proc: subprocess.Popen | None = None

    def poll(self) -> int | None:
        if self.proc is not None:
            return self.proc.poll()
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        return os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        pid = self.proc.pid if self.proc is not None else self.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        else:
            os.waitpid(self.pid, 0)


def _pytest_args(root: Path, tests: list[str]) -> list[str]:
    return [*tests, "-x", "-q", "-p", "no:cacheprovider", "--rootdir", str(root)]


def start(slot: Slot, root: Path, tests: list[str], log: Path, fork: bool) -> Job:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(slot.src), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    args = _pytest_args(root, tests)
    job = Job(slot, None, time.monotonic(), log)
    if not fork:
        with open(log, "wb") as out:
            job.proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", *args],
                cwd=root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return job
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        job.pid = pid
        return job
    code = 3  # the child: never return into the driver
    try:
        os.setsid()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(root)
        sys.dont_write_bytecode = True
        sys.path.insert(0, str(slot.src))
        import importlib

        importlib.invalidate_caches()
        top = importlib.import_module(TOP)
        if not str(top.__file__).startswith(str(slot.src)):
            print(f"{TOP} imported from {top.__file__}, not from {slot.src}")
            os._exit(4)
        import pytest

        code = int(pytest.main(args))
    except BaseException as exc:  # a mutant that breaks the import kills itself
        print(f"error in the test run: {exc!r}")
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _first_failure(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        if line.startswith(("FAILED ", "ERROR ")):
            return _one_line(line, 160)
    return _one_line(lines[-1], 160) if lines else ""


def run_baselines(root, slot, selections, timeout, fork, workdir) -> dict[tuple, float | str]:
    """The selections on the unmutated copy: their duration, or why they cannot be used."""
    out: dict[tuple, float | str] = {}
    for tests in selections:
        log = workdir / "baseline.log"
        job = start(slot, root, list(tests), log, fork)
        code = _wait(job, timeout)
        took = time.monotonic() - job.started
        if code == 0:
            out[tests] = took
            print(f"baseline {took:6.1f} s  {' '.join(tests)}", flush=True)
        else:
            why = "timeout" if code is None else f"exit {code}: {_first_failure(log)}"
            out[tests] = why
            print(f"baseline FAILED ({why})  {' '.join(tests)}", flush=True)
    return out


def _wait(job: Job, timeout: float) -> int | None:
    while True:
        code = job.poll()
        if code is not None:
            return code
        if time.monotonic() - job.started > timeout:
            job.kill()
            return None
        time.sleep(0.02)


def _classify(mutant: Mutant, code: int | None, log: Path) -> None:
    if code is None:
        mutant.status = "timeout"
    elif code == 0:
        mutant.status = "survived"
    elif code in (4, 5):  # pytest usage error / no tests collected: a driver problem
        mutant.status = "error"
        mutant.killed_by = f"pytest exit {code}: {_first_failure(log)}"
    else:  # 1 failed, 2 interrupted (collection error), 3 internal error, < 0 signal
        mutant.status = "killed"
        mutant.killed_by = _first_failure(log)


def run_mutants(
    root: Path,
    mutants: list[Mutant],
    tests_of: Callable[[str], list[str]],
    timeout: float | None,
    jobs: int,
    fork: bool,
) -> None:
    """Run every mutant against its tests, ``jobs`` at a time; sets status and seconds."""
    sources = {m.module: (root / "src" / TOP / m.module).read_text() for m in mutants}
    # chosen once: test files added while the run goes on do not change its selections
    selection = {module: tuple(tests_of(module)) for module in sources}
    with tempfile.TemporaryDirectory(prefix="mgnet-mutation-") as tmp:
        work = Path(tmp)
        slots = [Slot(root, work / f"slot{i}") for i in range(max(1, jobs))]
        first = timeout if timeout is not None else 1800.0
        base = run_baselines(root, slots[0], sorted(set(selection.values())), first, fork, work)
        pending = list(mutants)
        free, running = list(slots), []
        done, total = 0, len(mutants)
        try:
            while pending or running:
                while pending and free:
                    m = pending.pop(0)
                    tests = selection[m.module]
                    if isinstance(base[tests], str):
                        m.status, m.killed_by = "skipped", f"baseline failed: {base[tests]}"
                        done += 1
                        continue
                    slot = free.pop()
                    slot.apply(m.module, mutated_source(sources[m.module], m))
                    job = start(slot, root, list(tests), work / f"{slot.src.parent.name}.log", fork)
                    job.mutant = m
                    running.append(job)
                time.sleep(0.02)
                for job in list(running):
                    m = job.mutant
                    limit = (
                        timeout if timeout is not None else max(60.0, 4 * base[selection[m.module]])
                    )
                    code = job.poll()
                    if code is None and time.monotonic() - job.started <= limit:
                        continue
                    if code is None:
                        job.kill()
                    m.seconds = time.monotonic() - job.started
                    _classify(m, code, job.log)
                    job.slot.restore()
                    running.remove(job)
                    free.append(job.slot)
                    done += 1
                    _progress(done, total, m)
        finally:
            for job in running:  # interrupted: no test run outlives the driver
                job.kill()


def _progress(done: int, total: int, m: Mutant) -> None:
    print(
        f"[{done}/{total}] {m.status:8s} {m.seconds:6.1f} s  {m.id}  {m.kind}: {m.change}",
        flush=True,
    )


# ------------------------------------------------------------------------------ report


def summarize(mutants: list[Mutant]) -> dict:
    count = {
        s: sum(m.status == s for m in mutants)
        for s in ("killed", "timeout", "survived", "equivalent", "error", "skipped")
    }
    scored = count["killed"] + count["timeout"] + count["survived"]
    count["mutants"] = len(mutants)
    count["score"] = (count["killed"] + count["timeout"]) / scored if scored else None
    ran = [m.seconds for m in mutants if m.status not in ("skipped", "pending")]
    count["seconds_per_mutant"] = sum(ran) / len(ran) if ran else None
    return count


def report(by_package: dict[str, list[Mutant]]) -> dict[str, dict]:
    out = {}
    print()
    print(
        f"{'package':10s} {'mutants':>7s} {'killed':>6s} {'timeout':>7s} {'survived':>8s} "
        f"{'equiv':>5s} {'error':>5s} {'skip':>4s}  score   s/mutant"
    )
    for package, mutants in by_package.items():
        s = summarize(mutants)
        out[package] = s
        score = "   -  " if s["score"] is None else f"{100 * s['score']:5.1f}%"
        per = "  -" if s["seconds_per_mutant"] is None else f"{s['seconds_per_mutant']:.1f}"
        print(
            f"{package:10s} {s['mutants']:7d} {s['killed']:6d} {s['timeout']:7d} "
            f"{s['survived']:8d} {s['equivalent']:5d} {s['error']:5d} {s['skipped']:4d}  "
            f"{score}  {per}"
        )
    for title, status in (
        ("Surviving mutants", "survived"),
        ("Equivalent (listed)", "equivalent"),
        ("Killed by timeout", "timeout"),
        ("Errors", "error"),
    ):
        chosen = [m for ms in by_package.values() for m in ms if m.status == status]
        if not chosen:
            continue
        print(f"\n{title} ({len(chosen)}):")
        for m in chosen:
            print(f"  src/{TOP}/{m.module}:{m.line}  [{m.kind}] {m.id}")
            print(f"      {m.source_line}")
            print(f"      - {m.original}")
            print(f"      + {m.mutated}")
            if m.reason:
                print(f"      equivalent: {m.reason}")
            if status == "error":
                print(f"      {m.killed_by}")
    return out


def _commit(root: Path) -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--package",
        default="all",
        help=f"one of {', '.join(PACKAGES)}, a comma list, or all (default all)",
    )
    p.add_argument(
        "--module",
        action="append",
        default=[],
        help="only modules matching this glob, e.g. 'core/cycle.py' (repeatable)",
    )
    p.add_argument("--mutant", action="append", default=[], help="run only this mutant id")
    p.add_argument("--sample", type=int, default=0, help="N mutants per package, at random")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    p.add_argument("--json", type=Path, help="write every mutant and the scores here")
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds per mutant (default max(60, 4 x its tests' unmutated run))",
    )
    p.add_argument("-j", "--jobs", type=int, default=1, help="mutants at once (default 1)")
    p.add_argument("--tests", nargs="+", help="run these test files for every mutant instead")
    p.add_argument(
        "--equivalent",
        type=Path,
        default=EQUIVALENT,
        help="the table of equivalent mutants (default benchmarks/mutation_equivalent.txt)",
    )
    p.add_argument(
        "--no-fork",
        action="store_true",
        help="a fresh interpreter per mutant instead of a forked child",
    )
    p.add_argument(
        "--preload",
        default=PRELOAD,
        help=f"modules imported once before forking (default {PRELOAD})",
    )
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("-j/--jobs: need at least 1")
    if args.sample < 0:
        p.error("--sample: need N >= 0")
    if args.timeout is not None and args.timeout <= 0:
        p.error("--timeout: need seconds > 0")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.root.resolve()
    available = sorted(
        p.name for p in (root / "src" / TOP).iterdir() if (p / "__init__.py").is_file()
    )
    if args.mutant:
        packages = sorted({m.split("/")[0] for m in args.mutant} & set(available))
    elif args.package == "all":
        packages = [p for p in PACKAGES if p in available]
    else:
        packages = args.package.split(",")
    unknown = [p for p in packages if p not in available]
    if unknown or not packages:
        choices = [p for p in available if p in PACKAGES] or available
        print(
            f"--package: {', '.join(unknown) or 'none'} not found; choose from "
            f"{', '.join(choices)}, or all",
            file=sys.stderr,
        )
        return 2
    by_package = discover(root, packages)
    found = [m for ms in by_package.values() for m in ms]
    for package, mutants in by_package.items():
        if args.module:
            mutants = [m for m in mutants if any(fnmatch.fnmatch(m.module, g) for g in args.module)]
        if args.mutant:
            mutants = [m for m in mutants if m.id in args.mutant]
        if args.sample and len(mutants) > args.sample:
            picked = set(id(m) for m in random.Random(args.seed).sample(mutants, args.sample))
            mutants = [m for m in mutants if id(m) in picked]
        by_package[package] = mutants
    everything = [m for ms in by_package.values() for m in ms]
    if args.mutant:
        missing = set(args.mutant) - {m.id for m in everything}
        if missing:
            print(f"--mutant: no mutant {', '.join(sorted(missing))} (see --list)", file=sys.stderr)
            return 2

    def tests_of(module: str) -> list[str]:
        return args.tests if args.tests else select_tests(root, module)

    if args.list:
        for m in everything:
            print(f"{m.id:28s} {m.kind:9s} {m.change}")
        for package, ms in by_package.items():
            modules = sorted({m.module for m in ms})
            print(f"# {package}: {len(ms)} mutants in {len(modules)} modules")
            for module in modules:
                print(f"#   {module}: tests {' '.join(tests_of(module))}")
        return 0

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    fork = hasattr(os, "fork") and not args.no_fork
    if fork:
        for name in filter(None, args.preload.split(",")):
            with contextlib.suppress(ImportError):
                __import__(name)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
    began = time.monotonic()
    signal.signal(signal.SIGTERM, _terminate)  # clean up the copies and children on kill
    run_mutants(root, everything, tests_of, args.timeout, args.jobs, fork)
    equivalents = read_equivalents(args.equivalent)
    for m in everything:
        entry = match_equivalent(m, equivalents, found)
        if entry is None:
            continue
        entry.used = True
        if m.status == "survived":
            m.status, m.reason = "equivalent", entry.reason
        elif m.status in ("killed", "timeout"):
            print(f"note: {m.id} is listed as equivalent but was {m.status}: {m.killed_by}")
    if not (args.sample or args.mutant or args.module):  # every mutant ran: stale entries?
        for e in equivalents:
            if not e.used and e.module.split("/")[0] in packages:
                print(
                    f"note: no mutant matches the equivalent entry {e.module}:{e.line} | {e.change}"
                )
    scores = report(by_package)
    print(
        f"\n{len(everything)} mutants in {time.monotonic() - began:.0f} s "
        f"({datetime.date.today()}, commit {_commit(root)})"
    )
    if args.json:
        payload = {
            "date": str(datetime.date.today()),
            "commit": _commit(root),
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "scores": scores,
            "mutants": [
                {k: v for k, v in asdict(m).items() if k != "node_index"} for m in everything
            ],
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
