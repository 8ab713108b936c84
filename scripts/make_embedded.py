"""Build qlam_qiskit/data/embedded/mnist_mini.npz: a small, class-balanced, 14x14 MNIST subset shipped in the package.

Usage: python scripts/make_embedded.py [MNIST_DIR] [OUT_NPZ]
  MNIST_DIR defaults to /work/shared/data/mnist (IDX files, gzipped or plain).
Draws 400 images per digit (seeded) from the train files and 100 per digit from the t10k files,
downsamples each 28x28 image to 14x14 by 2x2 mean pooling (rounded half up), and saves uint8 arrays
x_train (4000,14,14), y_train (4000,), x_test (1000,14,14), y_test (1000,) with np.savez_compressed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from qlam_qiskit.data.idx import load_idx_split  # noqa: E402

SEED = 20260605
PER_CLASS_TRAIN = 400
PER_CLASS_TEST = 100


def pool2x2(images: np.ndarray) -> np.ndarray:
    """Downsample uint8 (N,28,28) to (N,14,14) by 2x2 mean pooling, rounded half up."""
    n, h, w = images.shape
    s = images.reshape(n, h // 2, 2, w // 2, 2).astype(np.uint16).sum(axis=(2, 4))  # (N, 14, 14)
    return ((s + 2) // 4).astype(np.uint8)


def balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Pick `per_class` random indices of each class (seeded), then shuffle them together."""
    picks = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(10)]
    return rng.permutation(np.concatenate(picks))


def main(src: Path, out: Path) -> None:
    """Read MNIST from src, build the subset, and write it to out."""
    rng = np.random.default_rng(SEED)
    x_tr, y_tr = load_idx_split(src, "train")
    x_te, y_te = load_idx_split(src, "t10k")
    i_tr = balanced_subset(y_tr, PER_CLASS_TRAIN, rng)
    i_te = balanced_subset(y_te, PER_CLASS_TEST, rng)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        x_train=pool2x2(x_tr[i_tr]),
        y_train=y_tr[i_tr].astype(np.uint8),
        x_test=pool2x2(x_te[i_te]),
        y_test=y_te[i_te].astype(np.uint8),
    )
    print(f"wrote {out} ({out.stat().st_size} bytes): {len(i_tr)} train, {len(i_te)} test")


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data/mnist")
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else root / "qlam_qiskit" / "data" / "embedded" / "mnist_mini.npz"
    main(src, out)
