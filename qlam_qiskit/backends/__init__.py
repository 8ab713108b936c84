"""Every way to run a QLAM template: the exact engine (``engine``), the Estimator primitives path
(``primitives``: Aer, fake devices, IBM Runtime), and one ``Backend`` object per name on top."""

from ..errors import BackendError, EngineError
from .registry import (BACKENDS, EXACT, Backend, GenericBackend, backend_names, generic_backend,
                       resolve_backend)

__all__ = ["BACKENDS", "EXACT", "Backend", "BackendError", "EngineError", "GenericBackend",
           "backend_names", "generic_backend", "resolve_backend"]
