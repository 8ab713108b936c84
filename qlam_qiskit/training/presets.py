"""Per-task training defaults for ``qlam-qiskit run``: what an option left out means for a task.

The model's defaults are ``ModelConfig``'s (the architecture is the same on every task); a preset
holds only what differs per task: the training schedule, whether to embed positions, and the
input-angle scale for the task's sequence length. The mnist-mini schedule trains in about 3
minutes on 2 CPU cores; it was chosen on mnist-mini validation splits only
(benchmarks/RESULTS.md): lr 2e-3 (circuit angles 7.5e-3) beat 4e-3 (1.5e-2) by ~10 points.
"""

from __future__ import annotations

import math

from ..data import TASK_INFO
from ..models import ModelConfig

_TRAIN = {"epochs": 11, "batch_size": 128, "lr": 2e-3, "circuit_lr": 7.5e-3}
PRESETS: dict[str, dict] = {"mnist-mini": {"position": True, "train": _TRAIN}}
# Full-length tasks (T = 784 or 1024): smaller batches for more optimiser steps per epoch.
for _task in ("smnist", "psmnist", "sfmnist", "scifar10"):
    PRESETS[_task] = {"position": True, "train": {**_TRAIN, "epochs": 10, "batch_size": 32}}


def preset(task: str, downsample: int = 1) -> dict:
    """Model options, train options and whether to embed positions for ``task`` read with pixel
    ``downsample``. Input angles are scaled by sqrt(196 / T) so the phase a memory accumulates
    over the sequence has the spread that worked at T = 196 (0.15 at T = 784)."""
    p = PRESETS[task]
    t, _ = TASK_INFO[task].shape(downsample)
    scale = round(ModelConfig.input_scale * math.sqrt(196 / t), 4)
    return {"model": {"input_scale": scale}, "train": dict(p["train"]), "position": p["position"]}
