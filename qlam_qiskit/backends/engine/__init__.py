"""The exact engine: Qiskit templates compiled to batched, differentiable statevector simulation.

Nothing here imports the primitives path; ``SequenceEngine`` runs a cell over a sequence,
``ReadoutEngine`` evaluates the learned-basis readout.
"""

from ...errors import EngineError
from .engine import KERNELS, SequenceEngine
from .program import DTYPES, CircuitProgram
from .readout import ReadoutEngine

__all__ = ["DTYPES", "KERNELS", "CircuitProgram", "EngineError", "ReadoutEngine", "SequenceEngine"]
