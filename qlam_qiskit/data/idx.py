"""Readers for the IDX format used by MNIST and Fashion-MNIST (gzip or plain)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049




def find_idx(folder: Path, name: str) -> Path | None:
    """Return `folder/name.gz` or plain `folder/name`, whichever exists, so both layouts load."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    """Read a whole file, un-gzipping `.gz` files, turning I/O failures into DataError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"missing file {path}: download it or pass a --data-dir that holds it") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(
            f"corrupt gzip file {path} ({exc}): delete it and download it again"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}): check the file and its permissions") from None


def _header(buf: bytes, path: Path, magic: int, ndims: int) -> tuple[int, ...]:
    """Check the magic number and return the dimension sizes stored in the IDX header."""
    need = 4 + 4 * ndims
    if len(buf) < need:
        raise DataError(f"truncated IDX file {path}: {len(buf)} bytes, header alone needs {need}; download it again")
    found = int.from_bytes(buf[0:4], "big")
    if found != magic:
        raise DataError(
            f"wrong magic number {found} in {path} (expected {magic}): "
            "this is not an IDX file of the expected kind; check the file name or download it again"
        )
    return tuple(int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndims))


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX image file (magic 2051) into a uint8 array (N, rows, cols) without Python loops."""
    path = Path(path)
    buf = _read_bytes(path)
    n, rows, cols = _header(buf, path, IMAGE_MAGIC, 3)
    want = 16 + n * rows * cols
    if len(buf) < want:
        raise DataError(
            f"truncated IDX file {path}: header says {n} images of {rows}x{cols} ({want} bytes) "
            f"but the file has {len(buf)} bytes; download it again"
        )
    return np.frombuffer(buf, dtype=np.uint8, count=n * rows * cols, offset=16).reshape(n, rows, cols)  # (N, H, W)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX label file (magic 2049) into an int64 array (N,)."""
    path = Path(path)
    buf = _read_bytes(path)
    (n,) = _header(buf, path, LABEL_MAGIC, 1)
    if len(buf) < 8 + n:
        raise DataError(
            f"truncated IDX file {path}: header says {n} labels but the file has {len(buf) - 8}; download it again"
        )
    return np.frombuffer(buf, dtype=np.uint8, count=n, offset=8).astype(np.int64)  # (N,)


def check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    """Raise DataError when any label lies outside [0, num_classes), naming the file."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.max() if labels.max() >= num_classes else labels.min())
        raise DataError(
            f"label {bad} out of range 0..{num_classes - 1} in {path}: the file is damaged or for another task; "
            "download it again"
        )


def load_idx_split(
    folder: Path, prefix: str, num_classes: int = 10, image_shape: tuple[int, int] = (28, 28)
) -> tuple[np.ndarray, np.ndarray]:
    """Load `<prefix>-images-idx3-ubyte[.gz]` + labels from folder as uint8 (N,H,W) and int64 (N,)."""
    paths = []
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{prefix}-{kind}-ubyte"
        found = find_idx(folder, name)
        if found is None:
            raise DataError(
                f"missing file {folder / (name + '.gz')}: put the MNIST-format IDX files there "
                "(gzipped or plain) or pass a different --data-dir"
            )
        paths.append(found)
    images = read_idx_images(paths[0])
    if images.shape[1:] != image_shape:
        raise DataError(
            f"wrong image size in {paths[0]}: {images.shape[1]}x{images.shape[2]}, expected "
            f"{image_shape[0]}x{image_shape[1]}; use the MNIST-format files for this task"
        )
    labels = read_idx_labels(paths[1])
    if len(images) != len(labels):
        raise DataError(
            f"count mismatch: {paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels; "
            "use files from the same release"
        )
    check_labels(labels, num_classes, paths[1])
    if len(images) == 0:
        raise DataError(f"{paths[0]} holds no images: the file is empty or damaged; download it "
                        "again")
    return images, labels
