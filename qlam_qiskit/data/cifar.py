"""Readers for CIFAR-10: `train.npz`/`test.npz` or the official `cifar-10-batches-py` pickles."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np

from .idx import DataError, check_labels

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


def has_npz(folder: Path) -> bool:
    """True when folder holds the `train.npz`/`test.npz` layout."""
    return (folder / "train.npz").is_file()


def has_batches(folder: Path) -> bool:
    """True when folder holds the official `cifar-10-batches-py` pickles."""
    return (folder / TRAIN_BATCHES[0]).is_file()


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one npz split with `x` uint8 [N,32,32,3] and integer `y` [N]; validate shapes and dtypes."""
    if not path.is_file():
        raise DataError(f"missing file {path}: put train.npz and test.npz there or pass a different --data-dir")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise DataError(
                    f"npz file {path} lacks key(s) {', '.join(missing)} (has {', '.join(z.files) or 'none'}): "
                    "it must hold x uint8 [N,32,32,3] and y int [N]"
                )
            x, y = z["x"], z["y"]
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"corrupt npz file {path} ({exc}): rebuild or download it again") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise DataError(
            f"bad array x in {path}: got {x.dtype} {list(x.shape)}, expected uint8 [N,32,32,3]; rebuild the file"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise DataError(
            f"bad array y in {path}: got {y.dtype} {list(y.shape)}, expected integer [{x.shape[0]}]; rebuild the file"
        )
    y = y.astype(np.int64)  # (N,)
    check_labels(y, 10, path)
    if len(x) == 0:
        raise DataError(f"npz file {path} holds no images: rebuild the file")
    return x, y  # (N, 32, 32, 3), (N,)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one official CIFAR-10 pickle batch into uint8 [N,32,32,3] (HWC) and int64 [N]."""
    if not path.is_file():
        raise DataError(
            f"missing file {path}: the cifar-10-batches-py folder needs data_batch_1..5 and test_batch; "
            "download and extract cifar-10-python.tar.gz again"
        )
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"])
        labels = np.asarray(d[b"labels"])
    except Exception as exc:  # any unpickling failure means the file is damaged
        raise DataError(
            f"corrupt pickle file {path} ({type(exc).__name__}): download and extract cifar-10-python.tar.gz again"
        ) from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DataError(
            f"bad CIFAR batch {path}: data {data.dtype} {list(data.shape)}, labels {list(labels.shape)}; "
            "expected uint8 [N,3072] and N labels; download it again"
        )
    if len(data) == 0:
        raise DataError(f"CIFAR batch {path} holds no images: download and extract "
                        "cifar-10-python.tar.gz again")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 3, 32, 32) -> (N, 32, 32, 3)
    y = labels.astype(np.int64)  # (N,)
    check_labels(y, 10, path)
    return np.ascontiguousarray(x), y


def load_cifar(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load CIFAR-10 train and test from folder (npz preferred) as uint8 (N,32,32,3) and int64 (N,)."""
    if has_npz(folder):
        tr, te = folder / "train.npz", folder / "test.npz"
        x_tr, y_tr = read_npz(tr)
        x_te, y_te = read_npz(te)
        return x_tr, y_tr, x_te, y_te
    parts = [read_batch(folder / name) for name in TRAIN_BATCHES]
    x_tr = np.concatenate([p[0] for p in parts])  # (50000, 32, 32, 3)
    y_tr = np.concatenate([p[1] for p in parts])  # (50000,)
    x_te, y_te = read_batch(folder / TEST_BATCH)
    return x_tr, y_tr, x_te, y_te
