"""Benchmark protocols: which models, tasks, seeds and budget a comparison uses, written down once."""

from __future__ import annotations

import json
from dataclasses import dataclass

MODELS = ("qlam", "transformer", "ssm", "lstm", "gru", "urnn")

PAPER: dict[str, dict[str, float]] = {
    "QLAM (paper)": {"smnist": 92.6, "sfmnist": 81.4, "scifar10": 53.6},
    "Transformer (paper)": {"smnist": 91.3, "sfmnist": 80.2, "scifar10": 53.0},
    "SSM (paper)": {"smnist": 91.2, "sfmnist": 79.6, "scifar10": 51.8},
}
"""arXiv:2605.13833's table: 10-fold mean test accuracy (%), full-length pixel sequences."""


@dataclass(frozen=True)
class Protocol:
    """One budget applied to every model, so the table compares memories, not tuning effort."""

    name: str
    """Protocol name as given to ``qlam-qiskit bench --protocol``."""
    tasks: tuple[str, ...] = ("smnist", "sfmnist", "scifar10")
    """Tasks in the grid. Default: the paper's three."""
    models: tuple[str, ...] = MODELS
    """Models in the grid: qlam and the classical baselines. Default: all six."""
    seeds: tuple[int, ...] = (0, 1)
    """Seeds; each draws its own validation split and initialisation. Default: (0, 1)."""
    downsample: tuple[int, ...] = (1,)
    """Pixel downsampling factors k (k×k blocks averaged, T shrinks k² times); several give accuracy
    against length. Default: (1,)."""
    gray: bool = True
    """scifar10 as one luminance channel (as in LRA's Image task). Default: True."""
    limit_train: int | None = None
    """Training images per run (None: the whole training split less validation). Default: None."""
    limit_test: int | None = None
    """Test images per run (None: the whole official test split). Default: None."""
    epochs: int = 10
    """Epochs for every model. Default: 10."""
    batch_size: int = 64
    """Batch size for every model. Default: 64."""
    lr: float = 2e-3
    """Peak learning rate of classical parameters, every model. Default: 2e-3."""
    circuit_lr: float = 7.5e-3
    """Peak learning rate of circuit angles (QLAM only). Default: 7.5e-3."""
    tune_trials: int = 0
    """Optuna trials per (task, downsampling, model), the same number for every model; each cell
    then trains with its study's best learning rates (``bench/tune.py``). 0: no tuning, every
    model trains with ``lr`` and ``circuit_lr``. Default: 0."""
    tune_epochs: int = 2
    """Epochs of every tuning run. Default: 2."""
    tune_limit_train: int | None = 5000
    """Training images of every tuning run (the first k of the training split; scored on its
    validation split, never on test). None: the whole split. Default: 5000."""
    tune_task: str | None = None
    """Tune on this task only and train every task with its studies' rates: a third of the
    tuning cost on a small machine, at the price of rates not chosen per task. None: each task
    tunes its own. Default: None."""
    tune_seed: int = 0
    """Seed of every tuning run (validation split, initialisation) and of the search. Default: 0."""
    match_params: bool = True
    """Give each baseline the residual width whose parameter count is nearest QLAM's. Default: True."""
    jobs: int = 1
    """Runs at once (each with threads // jobs torch threads). Scheduling only: a grid resumes
    at any jobs. Default: 1."""
    device: str = "cpu"
    """Torch device of every run. Default: "cpu"."""
    about: str = ""
    """One line on what the protocol is for."""


PROTOCOLS: dict[str, Protocol] = {
    "cpu": Protocol(
        "cpu", downsample=(2,), limit_train=3000, limit_test=1000, epochs=8, batch_size=128,
        lr=2e-3, circuit_lr=7.5e-3, jobs=2,
        about="2-core CPU, about an hour: images downsampled 2x2 (T=196/196/256), 3,000 train / "
              "1,000 test images, 8 epochs, 2 seeds. Not the paper's setting: a quick, fair "
              "ranking of the memories."),
    "full": Protocol(
        "full", seeds=(0, 1, 2), epochs=2, batch_size=32, lr=2e-3, circuit_lr=7.5e-3,
        tune_trials=4, tune_epochs=1, tune_limit_train=10000, tune_task="smnist", jobs=2,
        about="2-core CPU, resumed over several sessions (~15 h): full-length sequences "
              "(T=784/784/1024), full training splits less a 10% validation split, full test "
              "splits, 2 epochs, batch 32, 3 seeds; learning rates tuned once on sMNIST (4 "
              "trials of 1 epoch on 10,000 images per model) and used on every task."),
    "lengths": Protocol(
        "lengths", tasks=("smnist",), seeds=(0,), downsample=(4, 2, 1), epochs=2, batch_size=32,
        lr=2e-3, circuit_lr=7.5e-3, tune_trials=4, tune_epochs=1, tune_limit_train=10000,
        tune_task="smnist",
        about="2-core CPU: accuracy against sequence length, sMNIST at T=49/196/784 with full's "
              "budget (full training split, 2 epochs, batch 32, one seed; rates tuned per length "
              "as full tunes them). Its T=784 cells and studies are full's: copy them from a full "
              "grid's runs/ and tune/ folders to skip them."),
    "gpu": Protocol(
        "gpu", seeds=(0, 1, 2), epochs=20, batch_size=64, lr=2e-3, circuit_lr=7.5e-3,
        tune_trials=8, tune_epochs=3, tune_limit_train=10000, device="cuda",
        about="one GPU: full-length sequences (T=784/784/1024), full training splits "
              "less a 10% validation split, full test splits, 20 epochs, 3 seeds; learning rates tuned per "
              "model and task first (8 trials of 3 epochs on 10,000 images each)."),
}


SCHEDULING = ("jobs",)
"""Protocol fields that change how a grid is scheduled, never its results."""


def results_settings(fields: dict) -> dict:
    """A protocol's fields (``asdict``, or its protocol.json) less the scheduling ones, as JSON
    values: two grids with equal settings hold interchangeable runs."""
    return {k: v for k, v in json.loads(json.dumps(fields)).items() if k not in SCHEDULING}
