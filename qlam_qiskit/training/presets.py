"""Per-task defaults for ``qlam-qiskit run``: what an option left out means for each task.

The mnist-mini preset is sized to train in under 3 minutes on 2 CPU cores; the full tasks use a
larger model and more epochs. Chosen on validation splits only.
"""

from __future__ import annotations

_SMALL = {"model": {"d_model": 32, "layers": 2, "heads": 4, "qubits": 4, "queries": 2},
          "train": {"epochs": 6, "batch_size": 32, "lr": 3e-3, "circuit_lr": 1e-2}}
_FULL = {"model": {"d_model": 64, "layers": 2, "heads": 8, "qubits": 4, "queries": 2},
         "train": {"epochs": 10, "batch_size": 64, "lr": 3e-3, "circuit_lr": 1e-2}}

PRESETS: dict[str, dict[str, dict]] = {
    "mnist-mini": _SMALL,
    "smnist": _FULL,
    "psmnist": _FULL,
    "sfmnist": _FULL,
    "scifar10": _FULL,
}


def preset(task: str) -> dict:
    """Copies of the model and train defaults for ``task``, and whether to embed positions."""
    p = PRESETS[task]
    return {"model": dict(p["model"]), "train": dict(p["train"]), "position": p["position"]}
