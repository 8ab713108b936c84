"""Circuit-depth and transpilation reports and the hardware budget advisor (``qlam-qiskit report``)."""

from .budget import budget, longest, patch_for
from .cost import logical, transpile_costed, unrolled
from .fidelity import Estimate, estimate, idle_factor
from .scaling import Series, Setting, series, setting

__all__ = ["budget", "longest", "patch_for", "logical", "transpile_costed", "unrolled", "Estimate",
           "estimate", "idle_factor", "Series", "Setting", "series", "setting"]
