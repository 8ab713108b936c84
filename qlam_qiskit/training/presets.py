"""Per-task training defaults for ``qlam-qiskit run``: what an option left out means for a task.

The model's defaults are ``ModelConfig``'s (the architecture is the same on every task); a preset
holds only what differs per task: the training schedule, whether to embed positions, the
memories' time scales (steps and damping rates) for the task's sequence length, and for the
full-length tasks the memory itself (damped, see ``DAMPED``). The
mnist-mini schedule trains in about 3 minutes on 2 CPU cores; it was chosen on mnist-mini
validation splits only (benchmarks/RESULTS.md): lr 2e-3 (circuit angles 7.5e-3) beat 4e-3
(1.5e-2) by ~10 points.
"""

from __future__ import annotations

from ..data import TASK_INFO
from ..models import ModelConfig

_TRAIN = {"epochs": 11, "batch_size": 128, "lr": 2e-3, "circuit_lr": 7.5e-3}
PRESETS: dict[str, dict] = {"mnist-mini": {"position": True, "train": _TRAIN}}
# Full-length tasks (T = 784 or 1024): smaller batches for more optimiser steps per epoch, and
# damped memories of 2 qubits (on the full sMNIST split, 2 epochs, they reach a validation
# accuracy the pure memories do not; benchmarks/RESULTS.md, 2026-12-03) that tokens write into
# (RY·RZ inputs) and whose forgetting tokens set (selective damping rates), read by 3 queries:
# 50.6k parameters, the pure preset's count (benchmarks/design_search, fourth screen, and
# RESULTS.md, 2026-12-07).
DAMPED = {"memory": "damped", "qubits": 2, "queries": 3, "encoding": "ry_rz", "selective": True}
DAMPED_ONLY = ("encoding", "selective")
"""Preset options that belong to the damped memory: another --memory drops them (a pure memory
keeps RZ inputs, whose product form the fused kernel runs, and has no damping to select)."""
for _task in ("smnist", "psmnist", "sfmnist", "scifar10"):
    PRESETS[_task] = {"position": True, "model": DAMPED,
                      "train": {**_TRAIN, "epochs": 10, "batch_size": 32}}


REFERENCE_LEN = 784
"""The sequence length ``ModelConfig``'s time scales are set for (sMNIST)."""


def preset(task: str, downsample: int = 1, kind: str = "qlam") -> dict:
    """Model options, train options and whether to embed positions for ``task`` read with pixel
    ``downsample``. The memories' steps scale as 784 / T, so each memory turns by the same total
    angle over any sequence length: at T = 196 (mnist-mini) [4e-3, 0.4] gave 82.0% validation
    against 73.3% for T = 784's [1e-3, 0.1] (benchmarks/RESULTS.md). The memory options
    (``DAMPED``) are QLAM's on the exact engine only (``kind`` "qlam"): a baseline keeps the
    pure preset's state size (a damped 2-qubit memory holds 16 reals, as a pure 3-qubit one does),
    and a primitives run (any other ``kind``, e.g. "primitives") gets pure memories unless
    ``--memory damped`` is given. The damping rates scale as the steps do, whatever the memory,
    so a damped memory chosen by option gets the task's rates too (a pure one ignores them)."""
    p = PRESETS[task]
    t, _ = TASK_INFO[task].shape(downsample)
    scale = REFERENCE_LEN / t
    memory = p.get("model", {}) if kind == "qlam" else {}
    model = {**memory, **{k: round(getattr(ModelConfig, k) * scale, 8)  # per token: as 784 / T
                          for k in ("dt_min", "dt_max", "rate_min", "rate_max")}}
    return {"model": model, "train": dict(p["train"]), "position": p["position"]}


def with_options(preset_model: dict, given: dict) -> dict:
    """A preset's model options overridden by the ones given; given another memory than the
    preset's, the preset's options of its own memory (``DAMPED_ONLY``) are dropped first."""
    if given.get("memory", preset_model.get("memory")) != preset_model.get("memory"):
        preset_model = {k: v for k, v in preset_model.items() if k not in DAMPED_ONLY}
    return {**preset_model, **given}
