"""Per-task defaults for ``qlam-qiskit run``: what an option left out means for each task.

The mnist-mini preset is sized to train in under 3 minutes on 2 CPU cores; the full tasks use the
same block shape. Chosen on mnist-mini validation splits only (benchmarks/RESULTS.md): 16 memories
of 3 qubits beat 8 of 4, and lr 2e-3 (circuit angles 7.5e-3) beat 4e-3 (1.5e-2) by ~10 points.
"""

from __future__ import annotations

import math

_MODEL = {"d_model": 32, "layers": 2, "heads": 16, "qubits": 3, "queries": 2, "entangler": "rzz",
          "input_scale": 0.3, "mix_init": 0.5}
SEQ_LEN = {"mnist-mini": 196, "smnist": 784, "psmnist": 784, "sfmnist": 784, "scifar10": 1024}
"""Tokens per image at downsample 1."""

PRESETS: dict[str, dict] = {
    "mnist-mini": {"model": _MODEL, "position": True,
                   "train": {"epochs": 11, "batch_size": 128, "lr": 2e-3, "circuit_lr": 7.5e-3}},
}
# Full-length tasks (T = 784 or 1024): smaller batches for more optimiser steps per epoch.
for _task in ("smnist", "psmnist", "sfmnist", "scifar10"):
    PRESETS[_task] = {"model": _MODEL, "position": True,
                      "train": {"epochs": 10, "batch_size": 32, "lr": 2e-3, "circuit_lr": 7.5e-3}}


def preset(task: str, downsample: int = 1) -> dict:
    """Copies of the model and train defaults for ``task`` (read with pixel ``downsample``), and whether to
    embed positions. Input angles are scaled by sqrt(196 / T) so the phase a memory accumulates
    over the sequence has the spread that worked at T = 196 (0.15 at T = 784)."""
    p = PRESETS[task]
    t = SEQ_LEN[task] // (downsample * downsample)
    model = {**p["model"], "input_scale": round(p["model"]["input_scale"] * math.sqrt(196 / t), 4)}
    return {"model": model, "train": dict(p["train"]), "position": p["position"]}
