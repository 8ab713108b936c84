"""A researcher's own cell circuit inside the QLAM models: training, Aer equality, config records."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.circuit.library import efficient_su2

from qlam_qiskit.backends import resolve_backend
from qlam_qiskit.circuits.cell import CellConfig, qlam_cell
from qlam_qiskit.circuits.custom import cell_from_bytes, cell_from_circuit, cell_to_bytes
from qlam_qiskit.models import ModelConfig, QLAMClassifier, QLAMLayer
from qlam_qiskit.models.primitive import PrimitiveQLAM, attach_backend

HW = ModelConfig(layers=1, heads=1, pool="last", d_model=6, queries=2, max_len=4, num_classes=3,
                 dtype="complex128")


def su2_cell(n: int = 3):
    """RZ(x[q]) input layer, then efficient_su2 (RY, RZ, CX chain) weights: the dense kernel."""
    x = ParameterVector("x", n)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.rz(x[q], q)
    return cell_from_circuit(qc.compose(efficient_su2(n, reps=1, parameter_prefix="w")))


@pytest.fixture(autouse=True)
def isa_cache(tmp_path, monkeypatch):
    """Every test gets its own ISA cache folder."""
    monkeypatch.setenv("QLAM_CACHE_DIR", str(tmp_path / "isa"))


def test_classifier_records_the_custom_cell():
    cell = su2_cell(3)
    model = QLAMClassifier(HW, cell=cell)  # HW.qubits (default) is set from the cell's width
    assert model.cell_template is cell and model.blocks[0].mixer.cell_template is cell
    assert (model.config.cell, model.config.qubits) == ("custom", 3)
    assert (HW.cell, HW.qubits) == ("qlam", ModelConfig().qubits)  # the caller's config untouched
    layer = model.blocks[0].mixer
    assert layer.engine.kernel_for(torch.device("cpu")) == "dense"  # CX: no product form
    assert layer.mix.shape == (1, 12) and layer.proj.out_features == 3
    assert layer.readout_template.terms[3:] == ((1, 2), (0, 1))  # pairs from the cell's CX gates


def test_custom_cell_trains():
    torch.manual_seed(0)
    model = QLAMClassifier(ModelConfig(layers=1, heads=2, d_model=8, num_classes=3), cell=su2_cell(3))
    x, y = torch.randn(16, 5, 1), torch.randint(0, 3, (16,))  # (B, T, d_input), (B,)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    losses = []
    for step in range(12):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if step == 0:
            layer = model.blocks[0].mixer
            for p in (layer.mix, layer.proj.weight, layer.basis):
                assert torch.isfinite(p.grad).all() and p.grad.abs().max() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


def test_custom_cell_logits_equal_primitive_qlam_on_aer():
    cell = su2_cell(3)
    torch.manual_seed(1)
    exact = QLAMClassifier(HW, cell=cell).double()
    prim = PrimitiveQLAM(HW, cell=cell).double()
    prim.load_state_dict(exact.state_dict())
    assert prim.num_qubits == 3 and prim.terms == exact.blocks[0].mixer.readout_template.terms
    x = torch.randn(5, 4, 1, dtype=torch.float64)  # (B, T, d_input)
    attach_backend(prim, resolve_backend("aer"), 4)
    with torch.no_grad():
        np.testing.assert_allclose(prim(x).numpy(), exact(x).numpy(), atol=1e-6)


def test_model_rebuilds_from_its_config_and_stored_cell():
    torch.manual_seed(2)
    model = QLAMClassifier(HW, cell=su2_cell(2)).double()
    stored = ModelConfig(**model.config_dict()), cell_to_bytes(model.cell_template)
    again = QLAMClassifier(stored[0], cell=cell_from_bytes(stored[1])).double()
    again.load_state_dict(model.state_dict())
    x = torch.randn(3, 4, 1, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    with pytest.raises(ValueError, match="needs its circuit"):
        QLAMClassifier(stored[0])


def test_layer_with_custom_cell_equals_the_cell_config_layer():
    cfg = CellConfig(qubits=3, entangler="rzz", encoding="rz_zz")
    custom = cell_from_circuit(qlam_cell(cfg).circuit)
    kw = dict(heads=2, queries=2, dtype="complex128")
    torch.manual_seed(3)
    a = QLAMLayer(4, 5, cell=cfg, **kw).double()
    torch.manual_seed(3)
    b = QLAMLayer(4, 5, cell=custom, **kw).double()
    assert b.cell_template.config is None
    assert a.readout_template.terms == b.readout_template.terms
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb), na
    x = torch.randn(3, 6, 4, dtype=torch.float64)  # (B, T, d_in)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), atol=1e-12, rtol=0)


def test_cell_and_mixer_together_are_refused():
    with pytest.raises(ValueError, match="one of mixer= and cell="):
        QLAMClassifier(HW, mixer=lambda: torch.nn.Identity(), cell=su2_cell(2))
