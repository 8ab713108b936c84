"""The KERNELS table: its rows, the auto choice, refusals, and a CLI choice built from it."""

from __future__ import annotations

import click
import pytest
import torch

from qlam_qiskit.backends.engine import KERNELS, SequenceEngine, kernels
from qlam_qiskit.circuits.cell import CellConfig, init_circuit, qlam_cell
from qlam_qiskit.errors import EngineError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # kernel_for reads only the device type


def engine(kernel: str = "auto", **cfg) -> SequenceEngine:
    cfg = CellConfig(**{"qubits": 3, **cfg})
    return SequenceEngine(qlam_cell(cfg), init_circuit(cfg.qubits), kernel=kernel)


def test_table_rows():
    assert list(KERNELS) == ["auto", "fused", "fused-gpu", "dense", "dense-adjoint", "product",
                            "steps"]
    for name, k in KERNELS.items():
        assert k.name == name and k.about and k.memory
        assert k.cells in ("any", "diag-fixed", "product")
        assert (k.scan is None) == (name == "auto")
    assert KERNELS["fused"].devices == ("cpu",)
    assert click.Choice(list(KERNELS)).convert("dense-adjoint", None, None) == "dense-adjoint"
    with pytest.raises(click.BadParameter):
        click.Choice(list(KERNELS)).convert("fast", None, None)


@pytest.mark.skipif(not kernels.available(), reason="needs numba")
@pytest.mark.parametrize("cfg, device, want", [
    ({}, CPU, "fused"),  # product form, numba
    ({}, CUDA, "dense"),
    ({"qubits": 12}, CUDA, "product"),  # wide memories: no 2^n×2^n unitary
    ({"qubits": 12}, CPU, "fused"),
    ({"entangler": "cx"}, CPU, "dense"),  # no product form
    ({"encoding": "rz_zz"}, CUDA, "dense"),
    ({"encoding": "ry_rz"}, CPU, "steps"),  # not (diag, fixed)
    ({"encoding": "ry_rz"}, CUDA, "steps"),
])
def test_auto_choice(cfg, device, want):
    assert engine(**cfg).kernel_for(device) == want


def test_auto_without_numba(monkeypatch):
    monkeypatch.setattr(kernels, "available", lambda: False)
    assert engine().kernel_for(CPU) == "dense"
    assert engine(qubits=12).kernel_for(CPU) == "product"
    with pytest.raises(EngineError, match="needs numba"):
        engine("fused")


@pytest.mark.parametrize("name", ["dense", "dense-adjoint", "product", "steps"])
def test_named_kernels_run_as_named(name):
    assert engine(name).kernel_for(CPU) == name
    assert engine(name).kernel_for(CUDA) == name


def test_dense_kernels_on_cells_that_are_not_diag_fixed_run_as_steps():
    for name in ("dense", "dense-adjoint", "steps", "auto"):
        assert engine(name, encoding="ry_rz").kernel_for(CPU) == "steps"


def test_refusals():
    with pytest.raises(EngineError, match="kernel must be one of .*'dense-adjoint'"):
        engine("fast")
    for name in ("fused", "product"):
        with pytest.raises(EngineError, match="product form"):
            engine(name, entangler="cx")
    if kernels.available():
        with pytest.raises(EngineError, match="runs on cpu; on cuda use kernel='dense'"):
            engine("fused").kernel_for(CUDA)


def test_old_flags_are_gone():
    with pytest.raises(TypeError):
        SequenceEngine(qlam_cell(CellConfig(qubits=2)), fast=False)
    with pytest.raises(TypeError):
        SequenceEngine(qlam_cell(CellConfig(qubits=2)), adjoint=True)


def test_auto_on_cuda_picks_the_fused_gpu_kernel_where_numba_cuda_runs(monkeypatch):
    from qlam_qiskit.backends.engine import gpu

    monkeypatch.setattr(gpu, "available", lambda device=None: True)
    assert engine().kernel_for(CUDA) == "fused-gpu"  # product form: the fused CUDA scan
    assert engine(qubits=12).kernel_for(CUDA) == "fused-gpu"  # wide memories too
    assert engine(entangler="cx").kernel_for(CUDA) == "dense"  # no product form: dense stays
    monkeypatch.setattr(gpu, "problem", lambda device=None: "numba-cuda is not installed")
    with pytest.raises(EngineError, match="kernel='fused-gpu': numba-cuda is not installed"):
        engine("fused-gpu").kernel_for(CUDA)
