"""Per-task training defaults for ``qlam-qiskit run``: what an option left out means for a task.

The model's defaults are ``ModelConfig``'s (the architecture is the same on every task; its
memories' time scales, not a per-task input scale, adapt it to the sequence length); a preset
holds only what differs per task: the training schedule and whether to embed positions. The
mnist-mini schedule trains in about 3 minutes on 2 CPU cores; it was chosen on mnist-mini
validation splits only (benchmarks/RESULTS.md): lr 2e-3 (circuit angles 7.5e-3) beat 4e-3
(1.5e-2) by ~10 points.
"""

from __future__ import annotations

_TRAIN = {"epochs": 11, "batch_size": 128, "lr": 2e-3, "circuit_lr": 7.5e-3}
PRESETS: dict[str, dict] = {"mnist-mini": {"position": True, "train": _TRAIN}}
# Full-length tasks (T = 784 or 1024): smaller batches for more optimiser steps per epoch.
for _task in ("smnist", "psmnist", "sfmnist", "scifar10"):
    PRESETS[_task] = {"position": True, "train": {**_TRAIN, "epochs": 10, "batch_size": 32}}


def preset(task: str, downsample: int = 1) -> dict:
    """Model options, train options and whether to embed positions for ``task`` read with pixel
    ``downsample`` (the same for every downsampling today)."""
    p = PRESETS[task]
    return {"model": {}, "train": dict(p["train"]), "position": p["position"]}
