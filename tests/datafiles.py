"""Tiny data files in the real formats (IDX, CIFAR npz and pickles), written by tests: no test
depends on the shared data folder."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

N_TRAIN, N_TEST = 60, 20


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    """Write an IDX image file (magic 2051) and label file (magic 2049), gzipped or plain."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    img = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w)) + images.tobytes()
    lab = (2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()
    for kind, buf in (("images-idx3", img), ("labels-idx1", lab)):
        name = folder / f"{prefix}-{kind}-ubyte"
        if gz:
            with gzip.open(f"{name}.gz", "wb") as f:
                f.write(buf)
        else:
            name.write_bytes(buf)


def make_images(n: int, seed: int, shape: tuple[int, ...] = (28, 28)) -> tuple[np.ndarray, np.ndarray]:
    """Random, pairwise-distinct uint8 images and balanced labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), np.arange(n, dtype=np.int64) % 10


def make_mnist(folder: Path, gz: bool = True, seed: int = 1) -> dict[str, np.ndarray]:
    """Write a tiny MNIST-format folder and return its raw arrays."""
    x_tr, y_tr = make_images(N_TRAIN, seed)
    x_te, y_te = make_images(N_TEST, seed + 100)
    write_idx(folder, "train", x_tr, y_tr, gz)
    write_idx(folder, "t10k", x_te, y_te, gz)
    return {"x_tr": x_tr, "y_tr": y_tr, "x_te": x_te, "y_te": y_te}


def make_cifar_npz(folder: Path) -> dict[str, np.ndarray]:
    """Write tiny train.npz/test.npz in the shared-data CIFAR layout."""
    folder.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = make_images(N_TRAIN, 7, (32, 32, 3))
    x_te, y_te = make_images(N_TEST, 8, (32, 32, 3))
    np.savez(folder / "train.npz", x=x_tr, y=y_tr)
    np.savez(folder / "test.npz", x=x_te, y=y_te)
    return {"x_tr": x_tr, "y_tr": y_tr, "x_te": x_te, "y_te": y_te}


def make_cifar_batches(folder: Path, raw: dict[str, np.ndarray]) -> None:
    """Write the official cifar-10-batches-py pickles (CHW planes per row) holding raw's images."""
    folder.mkdir(parents=True, exist_ok=True)

    def dump(path: Path, x: np.ndarray, y: np.ndarray) -> None:
        data = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # (N, 32, 32, 3) -> (N, 1024 R | 1024 G | 1024 B)
        with open(path, "wb") as f:
            pickle.dump({b"batch_label": b"x", b"data": data, b"labels": [int(v) for v in y]}, f)

    for i, part in enumerate(np.array_split(np.arange(N_TRAIN), 5), start=1):
        dump(folder / f"data_batch_{i}", raw["x_tr"][part], raw["y_tr"][part])
    dump(folder / "test_batch", raw["x_te"], raw["y_te"])


