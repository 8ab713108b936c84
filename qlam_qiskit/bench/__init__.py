"""Grids of models × tasks × seeds on one budget, and their comparison table."""

from .protocol import PAPER, PROTOCOLS, Protocol
from .executors import EXECUTORS, LocalExecutor, RayExecutor, run_grid
from .grid import Cell, plan
from .report import summarise
from .tune import tune

__all__ = ["EXECUTORS", "PAPER", "PROTOCOLS", "Protocol", "Cell", "LocalExecutor", "RayExecutor",
           "plan", "run_grid", "summarise", "tune"]
