"""MgNet: one multigrid cycle that is both a ResNet-type CNN and a geometric multigrid solver.

The package's layers, its module map and what each symbol of the cycle is in each model and
solver: docs/design.md.

The names below are imported on first use, so that ``import mgnet`` (and the command
line's ``--help`` and ``--version``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mgnet._lazy import lazy_attributes

if TYPE_CHECKING:
    from mgnet.core import CycleRecord, Level, MgCycle, Step, Transfer
    from mgnet.models import count_parameters, create_model, list_models, parse_spec

__all__ = [
    "CycleRecord",
    "Level",
    "MgCycle",
    "Step",
    "Transfer",
    "__version__",
    "count_parameters",
    "create_model",
    "list_models",
    "parse_spec",
]


def _version() -> str:
    """The installed distribution's version: pyproject.toml is its one source."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch-mgnet")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


_getattr = lazy_attributes(
    __name__,
    {
        **dict.fromkeys(["CycleRecord", "Level", "MgCycle", "Step", "Transfer"], "mgnet.core"),
        **dict.fromkeys(
            ["count_parameters", "create_model", "list_models", "parse_spec"], "mgnet.models"
        ),
    },
)


def __getattr__(name: str):
    if name == "__version__":
        globals()["__version__"] = value = _version()
        return value
    return _getattr(name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


# timm.create_model("mgnet_cifar") works once timm is imported (torch-free until then)
from mgnet.timm_compat import install_timm_hook  # noqa: E402

install_timm_hook()
