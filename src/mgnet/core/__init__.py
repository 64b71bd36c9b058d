"""The MgNet cycle: one implementation, shared by every model and solver (docs/design.md)."""

from mgnet.core.cycle import CYCLE_SHAPES, CycleRecord, Level, MgCycle, Step, Transfer, residual
from mgnet.core.protocols import (
    FusedCorrectionSmoothing,
    FusedResidual,
    FusedRestriction,
    FusedSmoothingRestriction,
    InPlaceProlongation,
    InPlaceSmoother,
    IterateDependent,
    Operator,
)

__all__ = [
    "CYCLE_SHAPES",
    "CycleRecord",
    "FusedCorrectionSmoothing",
    "FusedResidual",
    "FusedRestriction",
    "FusedSmoothingRestriction",
    "InPlaceProlongation",
    "InPlaceSmoother",
    "IterateDependent",
    "Level",
    "MgCycle",
    "Operator",
    "Step",
    "Transfer",
    "residual",
]
