"""Grids of models × tasks × seeds on one budget, and their comparison table."""

from .protocol import PAPER, PROTOCOLS, Protocol
from .grid import Cell, plan, run_grid
from .report import summarise

__all__ = ["PAPER", "PROTOCOLS", "Protocol", "Cell", "plan", "run_grid", "summarise"]
