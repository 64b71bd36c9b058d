"""The MgNet cycle: one implementation, shared by every model and solver (docs/design.md)."""

from mgnet.core.cycle import CYCLE_SHAPES, CycleRecord, Level, MgCycle, Step, Transfer, residual

__all__ = ["CYCLE_SHAPES", "CycleRecord", "Level", "MgCycle", "Step", "Transfer", "residual"]
