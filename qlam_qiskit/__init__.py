"""QLAM: quantum recurrent sequence models on Qiskit, trained with an exact torch engine.

The handful of names a user needs::

    from qlam_qiskit import QLAMLayer, QLAMClassifier, ModelConfig, qlam_cell, cell_from_circuit

Circuits (``qlam_cell``, ``cell_from_circuit``, ``load_cell``) are plain Qiskit; ``QLAMLayer`` and
``QLAMClassifier`` are torch modules that run them on the exact engine; ``resolve_backend`` names
every other place a circuit can run (Aer, fake devices, IBM Runtime).
"""

from .backends import Backend, resolve_backend
from .backends.engine import ReadoutEngine, SequenceEngine
from .circuits.cell import CellConfig, CellTemplate, qlam_cell
from .circuits.custom import cell_from_circuit, load_cell, save_cell
from .circuits.readout import qlam_readout, query_observables
from .circuits.sequence import qlam_sequence
from .data import DataSpec, load_task
from .errors import QLAMError
from .models import ModelConfig, QLAMClassifier, QLAMLayer
from .models.primitive import PrimitiveQLAM, attach_backend
from .models.reference import qlam_layer_ref
from .training.loop import TrainConfig, param_groups, train

__version__ = "0.1.0"

__all__ = ["Backend", "CellConfig", "CellTemplate", "DataSpec", "ModelConfig", "PrimitiveQLAM",
           "QLAMClassifier", "QLAMError", "QLAMLayer", "ReadoutEngine", "SequenceEngine",
           "TrainConfig", "attach_backend", "param_groups", "cell_from_circuit", "load_cell", "load_task",
           "qlam_cell", "qlam_layer_ref", "qlam_readout", "qlam_sequence", "query_observables",
           "resolve_backend", "save_cell", "train"]
