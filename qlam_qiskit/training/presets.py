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
for _task in ("smnist", "psmnist", "sfmnist", "scifar10"):
    PRESETS[_task] = {"model": _MODEL, "position": True,
                      "train": {"epochs": 10, "batch_size": 64, "lr": 3e-3, "circuit_lr": 1e-2}}


def preset(task: str) -> dict:
    """Copies of the model and train defaults for ``task``, and whether to embed positions."""
    p = PRESETS[task]
    return {"model": dict(p["model"]), "train": dict(p["train"]), "position": p["position"]}
