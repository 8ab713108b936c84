"""Per-task defaults for ``qlam-qiskit run``: what an option left out means for each task.

The mnist-mini preset is sized to train in under 3 minutes on 2 CPU cores; the full tasks use the
same block shape. Chosen on validation splits only (see the closing notes / benchmarks/RESULTS.md).
"""

from __future__ import annotations

_MODEL = {"d_model": 32, "layers": 2, "heads": 8, "qubits": 4, "queries": 2, "entangler": "rzz",
          "input_scale": 0.3, "mix_init": 0.5}

PRESETS: dict[str, dict] = {
    "mnist-mini": {"model": _MODEL, "position": True,
                   "train": {"epochs": 11, "batch_size": 128, "lr": 4e-3, "circuit_lr": 1.5e-2}},
}
# Full-length tasks (T = 784 or 1024): input angles scaled by sqrt(196 / T) so the phase a memory
# accumulates over the sequence has the spread that worked at T = 196; smaller batches for more
# optimiser steps per epoch.
for _task in ("smnist", "psmnist", "sfmnist", "scifar10"):
    PRESETS[_task] = {"model": {**_MODEL, "input_scale": 0.15}, "position": True,
                      "train": {"epochs": 10, "batch_size": 32, "lr": 3e-3, "circuit_lr": 1e-2}}


def preset(task: str) -> dict:
    """Copies of the model and train defaults for ``task``, and whether to embed positions."""
    p = PRESETS[task]
    return {"model": dict(p["model"]), "train": dict(p["train"]), "position": p["position"]}
