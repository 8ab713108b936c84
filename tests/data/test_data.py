"""Tests for qlam_qiskit.data on small generated fixtures (no dependence on /work/shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qlam_qiskit.data import (
    DATA_ENV,
    DEFAULT_TASK,
    PSMNIST_PERMUTATION,
    TASKS,
    DataError,
    TaskData,
    load_task,
)

from datafiles import (N_TEST, N_TRAIN, make_cifar_batches, make_cifar_npz, make_images,
                       make_mnist, write_idx)


def row_ids(x: torch.Tensor, raw: np.ndarray) -> np.ndarray:
    """Recover which raw image each normalised sequence came from (normalisation is affine per channel)."""

    def std(a: np.ndarray) -> np.ndarray:
        a = a.reshape(len(a), -1).astype(np.float64)
        return (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)

    z, r = std(x.numpy()), std(raw)
    d = ((z[:, None, :] - r[None, :, :]) ** 2).mean(-1)  # (Nx, Nraw)
    ids = d.argmin(1)
    assert np.all(d[np.arange(len(ids)), ids] < 1e-6)
    return ids


def assert_one_line(err: pytest.ExceptionInfo, *needles: str) -> None:
    """The message is a single line and names each needle (file names, fixes)."""
    msg = str(err.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure QLAM_DATA_DIR from the caller's shell does not leak into a test."""
    monkeypatch.delenv(DATA_ENV, raising=False)


# ---------------------------------------------------------------- tasks


def test_registry() -> None:
    assert set(TASKS) == {"smnist", "psmnist", "sfmnist", "scifar10", "mnist-mini"}
    assert DEFAULT_TASK == "mnist-mini" and DATA_ENV == "QLAM_DATA_DIR"
    assert all(isinstance(v, str) and "\n" not in v for v in TASKS.values())


def test_smnist_shapes_and_normalisation(tmp_path: Path, no_env: None) -> None:
    raw = make_mnist(tmp_path)
    d = load_task("smnist", tmp_path)
    assert isinstance(d, TaskData) and d.name == "smnist"
    assert d.x_train.shape == (54, 784, 1) and d.x_val.shape == (6, 784, 1) and d.x_test.shape == (20, 784, 1)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64 and d.y_test.dtype == torch.int64
    assert d.seq_len == 784 and d.channels == 1 and d.num_classes == 10 and d.class_names[3] == "3"
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3
    # test split keeps file order; pixel order is row-major
    assert torch.equal(d.y_test, torch.from_numpy(raw["y_te"]))
    flat = raw["x_te"].reshape(N_TEST, 784).astype(np.float64)
    assert np.corrcoef(d.x_test[:, :, 0].numpy().ravel(), flat.ravel())[0, 1] > 0.99999


def test_psmnist_permutation_is_fixed_and_applied(tmp_path: Path, no_env: None) -> None:
    make_mnist(tmp_path)
    assert np.array_equal(PSMNIST_PERMUTATION, np.random.default_rng(20260605).permutation(784))
    s = load_task("smnist", tmp_path)
    p = load_task("psmnist", tmp_path)
    perm = torch.from_numpy(PSMNIST_PERMUTATION.astype(np.int64))
    assert torch.allclose(p.x_train, s.x_train[:, perm], atol=1e-6)
    assert torch.allclose(p.x_test, s.x_test[:, perm], atol=1e-6)
    assert torch.equal(p.y_train, s.y_train)


def test_sfmnist_parent_folder_and_plain_files(tmp_path: Path, no_env: None) -> None:
    make_mnist(tmp_path / "fashion-mnist", gz=False)
    d = load_task("sfmnist", tmp_path)
    assert d.x_train.shape == (54, 784, 1) and d.class_names[0] == "T-shirt/top" and d.class_names[9] == "Ankle boot"


def test_parent_folder_picks_subfolder_by_task(tmp_path: Path, no_env: None) -> None:
    a = make_mnist(tmp_path / "mnist", seed=1)
    b = make_mnist(tmp_path / "fashion-mnist", seed=2)
    assert np.array_equal(np.sort(row_ids(load_task("smnist", tmp_path).x_test, a["x_te"])), np.arange(N_TEST))
    assert np.array_equal(np.sort(row_ids(load_task("sfmnist", tmp_path).x_test, b["x_te"])), np.arange(N_TEST))


def test_env_var_and_missing_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_mnist(tmp_path / "mnist")
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(DataError) as err:
        load_task("smnist")
    assert_one_line(err, "smnist", "--data-dir", DATA_ENV, "train-images-idx3-ubyte.gz")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert load_task("smnist").x_train.shape == (54, 784, 1)
    with pytest.raises(DataError) as err:
        load_task("smnist", tmp_path / "nowhere")
    assert_one_line(err, "nowhere")


def test_scifar10_npz_tokens_and_gray(tmp_path: Path, no_env: None) -> None:
    raw = make_cifar_npz(tmp_path / "cifar10")
    d = load_task("scifar10", tmp_path)
    assert d.x_train.shape == (54, 1024, 3) and d.x_test.shape == (20, 1024, 3) and d.channels == 3
    assert d.class_names[0] == "airplane" and d.num_classes == 10
    mean = d.x_train.mean(dim=(0, 1))
    std = d.x_train.std(dim=(0, 1))
    assert torch.allclose(mean, torch.zeros(3), atol=1e-4) and torch.allclose(std, torch.ones(3), atol=1e-3)
    tok = raw["x_te"].reshape(N_TEST, 1024, 3).astype(np.float64)  # row-major RGB tokens
    for c in range(3):
        assert np.corrcoef(d.x_test[:, :, c].numpy().ravel(), tok[:, :, c].ravel())[0, 1] > 0.99999
    g = load_task("scifar10", tmp_path, gray=True)
    assert g.x_train.shape == (54, 1024, 1) and g.channels == 1
    luma = tok @ np.array([0.299, 0.587, 0.114])
    assert np.corrcoef(g.x_test[:, :, 0].numpy().ravel(), luma.ravel())[0, 1] > 0.99999
    assert abs(float(g.x_train.mean())) < 1e-4


def test_downsample_averages_blocks(tmp_path: Path, no_env: None) -> None:
    raw = make_mnist(tmp_path)
    d = load_task("smnist", tmp_path, downsample=2)
    assert d.x_test.shape == (20, 196, 1) and d.seq_len == 196
    pooled = raw["x_te"].astype(np.float64).reshape(N_TEST, 14, 2, 14, 2).mean(axis=(2, 4))
    assert np.corrcoef(d.x_test[:, :, 0].numpy().ravel(), pooled.ravel())[0, 1] > 0.99999
    make_cifar_npz(tmp_path / "cifar10")
    g = load_task("scifar10", tmp_path, gray=True, downsample=2)
    assert g.x_train.shape == (54, 256, 1)
    for task in ("psmnist", "mnist-mini"):
        with pytest.raises(DataError, match="use 1"):
            load_task(task, tmp_path, downsample=2)


def test_scifar10_batches_match_npz(tmp_path: Path, no_env: None) -> None:
    raw = make_cifar_npz(tmp_path / "npz")
    make_cifar_batches(tmp_path / "official" / "cifar-10-batches-py", raw)
    ref = load_task("scifar10", tmp_path / "npz")
    for where in (tmp_path / "official", tmp_path / "official" / "cifar-10-batches-py"):
        d = load_task("scifar10", where)
        assert torch.allclose(d.x_train, ref.x_train, atol=1e-6) and torch.equal(d.y_train, ref.y_train)
        assert torch.allclose(d.x_test, ref.x_test, atol=1e-6) and torch.equal(d.y_test, ref.y_test)


def test_limits_split_disjoint_and_seeded(tmp_path: Path, no_env: None) -> None:
    raw = make_mnist(tmp_path)
    full = load_task("smnist", tmp_path, seed=3)
    tr, va = row_ids(full.x_train, raw["x_tr"]), row_ids(full.x_val, raw["x_tr"])
    assert len(set(tr) | set(va)) == N_TRAIN and not set(tr) & set(va)
    assert torch.equal(full.y_train, torch.from_numpy(raw["y_tr"][tr]))

    lim = load_task("smnist", tmp_path, seed=3, limit_train=20, limit_test=5)
    assert lim.x_train.shape[0] == 20 and lim.x_val.shape[0] == 2 and lim.x_test.shape[0] == 5
    ltr, lva = row_ids(lim.x_train, raw["x_tr"]), row_ids(lim.x_val, raw["x_tr"])
    assert list(ltr) == list(tr[:20]) and list(lva) == list(va[:2])  # val carved before the limit
    assert len(set(lim.y_train.tolist())) > 1  # class-mixed
    assert abs(float(lim.x_train.mean())) < 1e-4  # stats from the limited train split
    assert len(set(row_ids(lim.x_test, raw["x_te"]))) == 5

    again = load_task("smnist", tmp_path, seed=3, limit_train=20, limit_test=5)
    assert torch.equal(again.x_train, lim.x_train) and torch.equal(again.x_test, lim.x_test)
    other = load_task("smnist", tmp_path, seed=4, limit_train=20)
    assert list(row_ids(other.x_train, raw["x_tr"])) != list(ltr)

    small = load_task("smnist", tmp_path, limit_train=5, val_fraction=0.2)
    assert small.x_val.shape[0] == 1
    none = load_task("smnist", tmp_path, val_fraction=0.0)
    assert none.x_val.shape == (0, 784, 1) and none.x_train.shape[0] == N_TRAIN


def test_embedded_task_needs_no_data_dir(no_env: None) -> None:
    d = load_task(DEFAULT_TASK)
    assert d.x_train.shape == (3600, 196, 1) and d.x_val.shape == (400, 196, 1) and d.x_test.shape == (1000, 196, 1)
    assert d.seq_len == 196 and d.num_classes == 10
    assert sorted(set(d.y_test.tolist())) == list(range(10))
    assert abs(float(d.x_train.mean())) < 1e-4
    lim = load_task("mnist-mini", limit_train=90, limit_test=30)
    assert lim.x_train.shape[0] == 90 and lim.x_val.shape[0] == 10 and lim.x_test.shape[0] == 30


# ---------------------------------------------------------------- errors


def test_unknown_task() -> None:
    with pytest.raises(DataError) as err:
        load_task("cifar100")
    assert_one_line(err, "cifar100", "smnist", "mnist-mini")


def test_missing_file(tmp_path: Path, no_env: None) -> None:
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_task("smnist", tmp_path)
    assert_one_line(err, "t10k-labels-idx1-ubyte")


def test_truncated_idx(tmp_path: Path, no_env: None) -> None:
    make_mnist(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError) as err:
        load_task("smnist", tmp_path)
    assert_one_line(err, str(p), "truncated")


def test_wrong_magic(tmp_path: Path, no_env: None) -> None:
    make_mnist(tmp_path, gz=False)
    p = tmp_path / "train-labels-idx1-ubyte"
    p.write_bytes((2051).to_bytes(4, "big") + p.read_bytes()[4:])
    with pytest.raises(DataError) as err:
        load_task("smnist", tmp_path)
    assert_one_line(err, str(p), "magic")


def test_count_mismatch(tmp_path: Path, no_env: None) -> None:
    make_mnist(tmp_path)
    x, y = make_images(N_TEST, 5)
    write_idx(tmp_path, "t10k", x, y[:-3])
    with pytest.raises(DataError) as err:
        load_task("smnist", tmp_path)
    assert_one_line(err, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def test_labels_out_of_range(tmp_path: Path, no_env: None) -> None:
    make_mnist(tmp_path)
    x, y = make_images(N_TEST, 5)
    y[4] = 12
    write_idx(tmp_path, "t10k", x, y)
    with pytest.raises(DataError) as err:
        load_task("smnist", tmp_path)
    assert_one_line(err, "t10k-labels-idx1-ubyte.gz", "12")


@pytest.mark.parametrize("damage", ["garbage", "cut"])
def test_corrupt_gzip(tmp_path: Path, no_env: None, damage: str) -> None:
    make_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(b"not a gzip file at all" if damage == "garbage" else p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(DataError) as err:
        load_task("smnist", tmp_path)
    assert_one_line(err, str(p), "gzip")


@pytest.mark.parametrize(
    "arrays",
    [
        {"x": np.zeros((4, 32, 32, 3), np.uint8)},  # no y
        {"images": np.zeros((4, 32, 32, 3), np.uint8), "y": np.zeros(4, np.int64)},  # no x
        {"x": np.zeros((4, 32, 32), np.uint8), "y": np.zeros(4, np.int64)},  # wrong shape
        {"x": np.zeros((4, 32, 32, 3), np.float32), "y": np.zeros(4, np.int64)},  # wrong dtype
        {"x": np.zeros((4, 32, 32, 3), np.uint8), "y": np.zeros(5, np.int64)},  # y length
        {"x": np.zeros((4, 32, 32, 3), np.uint8), "y": np.full(4, 10, np.int64)},  # label range
    ],
)
def test_bad_npz(tmp_path: Path, no_env: None, arrays: dict[str, np.ndarray]) -> None:
    make_cifar_npz(tmp_path)
    np.savez(tmp_path / "test.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_task("scifar10", tmp_path)
    assert_one_line(err, str(tmp_path / "test.npz"))


def test_corrupt_npz(tmp_path: Path, no_env: None) -> None:
    make_cifar_npz(tmp_path)
    (tmp_path / "train.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError) as err:
        load_task("scifar10", tmp_path)
    assert_one_line(err, "train.npz")


def test_corrupt_and_missing_pickle(tmp_path: Path, no_env: None) -> None:
    raw = make_cifar_npz(tmp_path / "npz")
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar_batches(folder, raw)
    (folder / "data_batch_3").write_bytes(b"\x80\x04 this is not a pickle")
    with pytest.raises(DataError) as err:
        load_task("scifar10", tmp_path)
    assert_one_line(err, "data_batch_3", "pickle")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError) as err:
        load_task("scifar10", folder)
    assert_one_line(err, "data_batch_3")
