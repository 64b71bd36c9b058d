"""MgNet: one multigrid cycle that is both a ResNet-type CNN and a geometric multigrid solver."""

from mgnet.core import CycleRecord, Level, MgCycle, Step, Transfer
from mgnet.models import count_parameters, create_model, list_models, parse_spec

__version__ = "0.1.0"

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
