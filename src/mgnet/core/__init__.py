"""The MgNet cycle (DESIGN.md section 1): one implementation, shared by every model and solver."""

from mgnet.core.cycle import CYCLE_SHAPES, CycleRecord, Level, MgCycle, Step, Transfer

__all__ = ["CYCLE_SHAPES", "CycleRecord", "Level", "MgCycle", "Step", "Transfer"]
