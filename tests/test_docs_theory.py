"""docs/theory.md runs as written: every ```python block, in order, in one namespace."""

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "theory.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def test_the_page_has_snippets_for_every_claim():
    text = DOC.read_text()
    blocks = python_blocks(text)
    assert len(blocks) >= 8
    for heading in ["## 1.", "## 2.", "## 3.", "## 4.", "## 5."]:
        assert heading in text


def test_every_snippet_runs_in_order_in_one_namespace():
    namespace: dict = {"__name__": "docs_theory"}
    out = io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out):
            for i, block in enumerate(python_blocks(DOC.read_text())):
                try:
                    exec(compile(block, f"{DOC.name}[block {i}]", "exec"), namespace)
                except Exception as e:  # name the block that broke
                    pytest.fail(f"docs/theory.md block {i} raised {type(e).__name__}: {e}")
    finally:
        torch.set_num_threads(threads)
    printed = out.getvalue()
    # the numbers the page quotes are the numbers the code prints
    assert "conv2 of block 1 differs" in printed
    quoted = re.findall(r"^    (mgnet_\w+ +[\d,]+  .*)$", DOC.read_text(), re.M)
    assert len(quoted) == 3
    for line in quoted:
        assert line.split() == next(
            p.split() for p in printed.splitlines() if p.startswith(line.split()[0] + " ")
        )
