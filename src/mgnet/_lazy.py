"""Lazy package attributes (PEP 562): ``import mgnet`` stays free of torch.

A package lists which submodule defines each public name; the submodule is imported on the
first access of one of its names. ``mgnet --help`` and ``mgnet --version`` then start
without importing torch, while ``from mgnet import create_model`` works as before.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``, whose name ``n`` lives in module ``where[n]``."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later accesses skip this function
        return value

    return __getattr__
