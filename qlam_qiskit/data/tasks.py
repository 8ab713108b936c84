"""Sequence-classification tasks built from image data sets: pixel-by-pixel MNIST, Fashion-MNIST, CIFAR-10."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cifar import has_batches, has_npz, load_cifar
from .idx import DataError, find_idx, load_idx_split

DATA_ENV = "QLAM_DATA_DIR"
DEFAULT_TASK = "mnist-mini"
EMBEDDED_PATH = Path(__file__).resolve().parent / "embedded" / "mnist_mini.npz"

#: psMNIST's fixed pixel order: ``np.random.default_rng(20260605).permutation(784)``.
#: Pixel ``t`` of a psmnist sequence is row-major pixel ``PSMNIST_PERMUTATION[t]`` of the image.
PSMNIST_SEED = 20260605
PSMNIST_PERMUTATION: np.ndarray = np.random.default_rng(PSMNIST_SEED).permutation(784)
PSMNIST_PERMUTATION.setflags(write=False)

@dataclass(frozen=True)
class TaskInfo:
    """What a task is, before any data is read: its sequence shape and a line about it."""

    seq_len: int
    """Tokens per image at downsample 1 (one pixel per token)."""
    channels: int
    """Values per token: 1 for grayscale, 3 for RGB."""
    about: str

    def shape(self, downsample: int = 1, gray: bool = False) -> tuple[int, int]:
        """(T, C) after averaging PxP pixel blocks and, for RGB, an optional luminance channel."""
        return self.seq_len // (downsample * downsample), 1 if gray else self.channels


TASK_INFO: dict[str, TaskInfo] = {
    "mnist-mini": TaskInfo(196, 1, "embedded MNIST subset (4k train / 1k test), 14x14 read pixel "
                                   "by pixel; no download"),
    "smnist": TaskInfo(784, 1, "sequential MNIST, 28x28 read pixel by pixel"),
    "psmnist": TaskInfo(784, 1, "permuted sequential MNIST (fixed seed-20260605 pixel permutation)"),
    "sfmnist": TaskInfo(784, 1, "sequential Fashion-MNIST, pixel by pixel"),
    "scifar10": TaskInfo(1024, 3, "sequential CIFAR-10, row-major RGB pixels (C=1 with gray)"),
}
"""Every task's facts: the one place sequence lengths and channels are written down."""

TASKS: dict[str, str] = {k: f"{v.about}: T={v.seq_len}, C={v.channels}" for k, v in TASK_INFO.items()}
"""Task name -> one line for help texts."""

DIGITS = tuple(str(i) for i in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# task -> (subfolder names tried under a parent data dir, class names)
_SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "smnist": (("mnist", "MNIST"), DIGITS),
    "psmnist": (("mnist", "MNIST"), DIGITS),
    "sfmnist": (("fashion-mnist", "fashion_mnist", "FashionMNIST"), FASHION),
    "scifar10": (("cifar10", "cifar-10-batches-py", "cifar-10"), CIFAR10),
}


@dataclass(frozen=True, eq=False)
class TaskData:
    """A task's train/val/test sequences, normalised with train statistics, ready for a sequence model."""

    name: str
    x_train: torch.Tensor  # (N, T, C) float32
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor  # (Nv, T, C) float32
    y_val: torch.Tensor  # (Nv,) int64
    x_test: torch.Tensor  # (Nt, T, C) float32
    y_test: torch.Tensor  # (Nt,) int64
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...] = ()  # (C,) train statistics used to standardise, kept for checkpoints
    std: tuple[float, ...] = ()  # (C,)

    @property
    def seq_len(self) -> int:
        """Sequence length T (time steps per example)."""
        return int(self.x_train.shape[1])

    @property
    def channels(self) -> int:
        """Input channels C per time step."""
        return int(self.x_train.shape[2])


def _resolve_dir(task: str, data_dir: str | os.PathLike | None) -> Path:
    """Pick the folder holding the task's files: the argument, else $QLAM_DATA_DIR, else a DataError."""
    first = "train.npz or cifar-10-batches-py/" if task == "scifar10" else "train-images-idx3-ubyte.gz ..."
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or None
    if data_dir is None:
        raise DataError(
            f"no data for task {task}: pass --data-dir DIR (a folder with {first}) or set {DATA_ENV}"
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data dir {root} does not exist: pass --data-dir DIR (a folder with {first}) or set {DATA_ENV}")
    subdirs, _ = _SOURCES[task]
    if task == "scifar10":
        holds = lambda d: has_npz(d) or has_batches(d)  # noqa: E731
        nested = [root / s for s in subdirs] + [root / s / "cifar-10-batches-py" for s in subdirs]
    else:
        holds = lambda d: find_idx(d, "train-images-idx3-ubyte") is not None  # noqa: E731
        nested = [root / s for s in subdirs]
    for cand in [root, *nested]:
        if cand.is_dir() and holds(cand):
            return cand
    want = "train.npz" if task == "scifar10" else "train-images-idx3-ubyte.gz"
    raise DataError(
        f"missing file {root / want} (also looked in {', '.join(str(root / s) for s in subdirs)}): "
        f"pass a --data-dir that holds the {task} files or set {DATA_ENV}"
    )


def _load_embedded() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load the packaged 14x14 MNIST subset as uint8 (N,14,14) images and int64 labels."""
    path = EMBEDDED_PATH
    if not path.is_file():
        raise DataError(f"missing file {path}: reinstall qlam-qiskit or run scripts/make_embedded.py")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [z[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except Exception as exc:
        raise DataError(f"corrupt npz file {path} ({type(exc).__name__}): reinstall qlam-qiskit") from None
    x_tr, y_tr, x_te, y_te = arrays
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)


def _to_sequences(images: np.ndarray, task: str, gray: bool, downsample: int = 1) -> np.ndarray:
    """Flatten uint8 images to float32 sequences (N, T, C) in [0, 1], in the task's pixel order.

    ``downsample`` > 1 averages k×k pixel blocks first (28×28 -> 14×14 at 2): T shrinks by k².
    """
    n = images.shape[0]
    img = images.reshape(n, 32, 32, 3) if task == "scifar10" else images[..., None]  # (N, H, W, C)
    img = img.astype(np.float32) / 255.0
    if downsample > 1:
        k = downsample
        h, w = img.shape[1] // k, img.shape[2] // k
        img = img[:, :h * k, :w * k].reshape(n, h, k, w, k, img.shape[3]).mean(axis=(2, 4))
    seq = img.reshape(n, img.shape[1] * img.shape[2], img.shape[3])  # (N, T, C) row-major
    if task == "scifar10" and gray:
        seq = (seq @ LUMA)[:, :, None]  # (N, T, 1)
    if task == "psmnist":
        seq = seq[:, PSMNIST_PERMUTATION]  # (N, 784, 1)
    return np.ascontiguousarray(seq)


def load_task(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    gray: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    downsample: int = 1,
) -> TaskData:
    """Load a task as normalised (N, T, C) sequences with a seeded validation split carved from train.

    Validation takes ``round(val_fraction * N)`` (at least 1) examples of the shuffled train split
    before any limit; ``limit_train`` keeps the first k of the rest and caps validation at
    ``max(1, limit_train // 9)``; ``limit_test`` keeps the first k of a seeded shuffle of test.
    Every split holds at least one image (fewer than 2 training images, or an empty file, is a
    DataError naming the file). Channel mean/std come from the final train split. ``downsample`` > 1 averages k×k pixel blocks (shorter sequences for quick
    protocols; not the published tasks). ``psmnist`` uses the fixed pixel order ``PSMNIST_PERMUTATION``
    (``np.random.default_rng(20260605).permutation(784)``).
    """
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if downsample < 1 or (downsample > 1 and name in ("psmnist", "mnist-mini")):
        raise DataError(f"downsample {downsample} is not available for {name}: use 1"
                        + (" (mnist-mini is already 14x14)" if name == "mnist-mini" else
                           " (the psmnist permutation is fixed for 784 pixels)" if downsample > 1 else ""))
    for label, lim in (("limit_train", limit_train), ("limit_test", limit_test)):
        if lim is not None and lim < 1:
            raise ValueError(f"{label} must be a positive integer, got {lim}")

    if name == "mnist-mini":
        x_tr, y_tr, x_te, y_te = _load_embedded()
        class_names, where = DIGITS, EMBEDDED_PATH
    else:
        folder = _resolve_dir(name, data_dir)
        class_names, where = _SOURCES[name][1], folder
        if name == "scifar10":
            x_tr, y_tr, x_te, y_te = load_cifar(folder)
        else:
            x_tr, y_tr = load_idx_split(folder, "train")
            x_te, y_te = load_idx_split(folder, "t10k")
    if len(x_tr) < 2:
        raise DataError(f"only {len(x_tr)} training image(s) in {where}: a run needs at least 2 "
                        "(one goes to the validation split); use the task's full files")

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_tr))
    n_val = max(1, int(round(val_fraction * len(x_tr)))) if val_fraction > 0 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    if limit_train is not None:
        train_idx = train_idx[:limit_train]
        val_idx = val_idx[: min(len(val_idx), max(1, limit_train // 9))]
    test_idx = np.arange(len(x_te))
    if limit_test is not None:
        test_idx = rng.permutation(len(x_te))[:limit_test]

    xs_tr = _to_sequences(x_tr[train_idx], name, gray, downsample)  # (N, T, C)
    xs_val = _to_sequences(x_tr[val_idx], name, gray, downsample)  # (Nv, T, C)
    xs_te = _to_sequences(x_te[test_idx], name, gray, downsample)  # (Nt, T, C)
    mean = xs_tr.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)  # (C,)
    std = np.maximum(xs_tr.std(axis=(0, 1), dtype=np.float64), 1e-6).astype(np.float32)  # (C,)

    def norm(x: np.ndarray) -> torch.Tensor:
        """Standardise with train statistics and wrap as a float32 tensor."""
        x -= mean
        x /= std
        return torch.from_numpy(x)

    return TaskData(
        name=name,
        x_train=norm(xs_tr),
        y_train=torch.from_numpy(np.ascontiguousarray(y_tr[train_idx], dtype=np.int64)),
        x_val=norm(xs_val),
        y_val=torch.from_numpy(np.ascontiguousarray(y_tr[val_idx], dtype=np.int64)),
        x_test=norm(xs_te),
        y_test=torch.from_numpy(np.ascontiguousarray(y_te[test_idx], dtype=np.int64)),
        num_classes=len(class_names),
        class_names=class_names,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
    )
