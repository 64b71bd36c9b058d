"""docs/design.md is true of the code: every dotted name it mentions exists, its module map
covers every module, every hook of the core is described, and the imports point the way its
layers say (checked on the source, so a new import against the grain fails here)."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DOC = ROOT / "docs" / "design.md"
TEXT = DOC.read_text()

# the torch-free modules the page lists (section 1)
TORCH_FREE = [
    "mgnet",
    "mgnet._lazy",
    "mgnet.constants",
    "mgnet.errors",
    "mgnet.log",
    "mgnet.plotting",
    "mgnet.curves",
    "mgnet.timm_compat",
    "mgnet.train",
    "mgnet.train.config",
    "mgnet.train.rundir",
    "mgnet.train.writers",
]


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (packages by their own name)."""
    out = {}
    for path in sorted((SRC / "mgnet").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted``, then read the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_dotted_name_on_the_page_exists():
    names = sorted(set(re.findall(r"\bmgnet(?:\.[A-Za-z_]\w*)+", TEXT)))
    assert len(names) > 60
    missing = []
    for name in names:
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"docs/design.md names what does not exist: {missing}"


def test_the_module_map_covers_every_module():
    # the subcommands are covered by "one module per subcommand" and tests/test_cli.py
    skip = {"mgnet.__main__", "mgnet.cli.__main__"}
    mentioned = set(re.findall(r"`(mgnet(?:\.\w+)*)`", TEXT))
    missing = [
        m
        for m in _modules()
        if m not in skip and not m.startswith("mgnet.cli.") and m not in mentioned
    ]
    assert not missing, f"modules missing from docs/design.md: {missing}"


def test_every_hook_of_the_core_is_described():
    from mgnet.core import protocols

    for name in protocols.__all__:
        if name != "Operator":  # the plain __call__, which the page states in words
            assert f"`{name}`" in TEXT, name
    for hook in ("residual(u, f)", "update_(A, u, f)", "needs_u", "add_to(u, e)",
                 "restrict_residual(A, u, f)", "smooth_restrict_(A, u, f, Bs)",
                 "add_to_smooth_(u, e, A, f, Bs)"):  # fmt: skip
        assert f"`{hook}`" in TEXT, hook


def test_the_symbol_table_has_every_instance():
    assert "| instance | A^l | B^{l,i} | Pi | R | P | nu | sigma |" in TEXT
    rows = [line for line in TEXT.splitlines() if line.startswith("| ")]
    for instance in ("MgNet classifier", "pre-activation ResNet form", "constrained model",
                     "geometric multigrid, correction scheme", "FAS",
                     "operator-dependent interpolation", "algebraic multigrid",
                     "learned smoother", "MgNO operator layer"):  # fmt: skip
        (row,) = [r for r in rows if r.startswith(f"| {instance}")]
        assert row.count("|") == 9, row  # a cell for each of the seven symbols


# ------------------------------------------------------------------- import directions
def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "mgnet" or m.startswith("mgnet.")}


def _layer(module: str) -> str:
    return ".".join(module.split(".")[:2])


# what each layer may import besides itself (section 1 of the page)
ALLOWED = {
    "mgnet.core": set(),
    "mgnet.stencils": {"mgnet.core"},
    "mgnet.models": {"mgnet.core"},
    "mgnet.multigrid": {
        "mgnet.core",
        "mgnet.stencils",
        "mgnet.constants",
        "mgnet.errors",
        "mgnet.device",
    },  # fmt: skip
    "mgnet.constants": set(),
    "mgnet.errors": set(),
    "mgnet.log": set(),
    "mgnet.device": set(),
    "mgnet._lazy": set(),
    "mgnet.plotting": {"mgnet.errors"},
    "mgnet.curves": {"mgnet.errors", "mgnet.plotting"},
}


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_point_the_way_the_layers_say(module):
    layer = _layer(module)
    imported = {_layer(m) for m in _imports(_modules()[module])} - {layer}
    if layer in ALLOWED:
        assert imported <= ALLOWED[layer], (module, imported - ALLOWED[layer])
    if layer == "mgnet.data":
        assert not imported & {"mgnet.train", "mgnet.models", "mgnet.cli"}, module
        if module != "mgnet.data.darcy":  # only the Darcy generator solves
            assert not imported & {"mgnet.multigrid", "mgnet.stencils", "mgnet.core"}, module
    if layer == "mgnet.train":
        assert "mgnet.cli" not in imported, module
    if layer not in ("mgnet.cli", "mgnet.__main__"):
        assert "mgnet.cli" not in imported, module


def test_the_torch_free_modules_import_no_torch():
    code = (
        "import importlib, sys\n"
        f"for m in {TORCH_FREE!r}:\n"
        "    importlib.import_module(m)\n"
        "import mgnet.cli\n"
        "for name in mgnet.cli.SUBCOMMANDS:\n"
        "    importlib.import_module('mgnet.cli.' + name)\n"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n"
    )
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
    for m in TORCH_FREE:
        assert f"`{m}`" in TEXT, m


def test_the_project_points_only_at_its_own_notes():
    forbidden = ("DESIGN" + ".md", "../" + "shared")
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    for folder in ("src", "tests", "benchmarks"):
        files += [p for p in (ROOT / folder).rglob("*.py")]
    for path in files:
        text = path.read_text(errors="replace")
        for word in forbidden:
            assert word not in text, f"{path.relative_to(ROOT)} mentions {word}"
    for path in (SRC / "mgnet").rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if "design" in doc.lower():
            assert "docs/design.md" in doc, path
