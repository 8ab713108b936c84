"""One Backend object per name: parsing, what each needs, and the exact and Aer backends agreeing
with Qiskit's Statevector on the same circuit."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.quantum_info import SparsePauliOp, Statevector

from qlam_qiskit.backends import (BACKENDS, EXACT, BackendError, backend_names, generic_backend,
                                  resolve_backend)
from qlam_qiskit.backends.primitives.estimator import RuntimeOptions
from qlam_qiskit.circuits.cell import CellConfig, qlam_cell
from qlam_qiskit.circuits.sequence import qlam_sequence


@pytest.fixture(autouse=True)
def isa_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QLAM_CACHE_DIR", str(tmp_path / "isa"))


@pytest.mark.parametrize("name, kind, exact, device", [
    (EXACT, "statevector", True, False), ("aer", "aer", False, False),
    ("aer_gpu", "aer_gpu", False, False), ("fake_fez", "fake", False, True),
    ("ibm_torino", "ibm", False, True)])
def test_every_name_resolves_to_its_family(name, kind, exact, device):
    b = resolve_backend(name)
    assert (b.name, b.kind, b.exact, b.has_device) == (name, kind, exact, device)


@pytest.mark.parametrize("name", ["nope", "fake_", "ibm_", "Aer", ""])
def test_unknown_names_are_refused_with_the_choices(name):
    with pytest.raises(BackendError, match="choose one of: statevector, aer") as err:
        resolve_backend(name)
    assert "\n" not in str(err.value)


def test_listing_order_and_patterns():
    assert backend_names() == ["statevector", "aer", "aer_gpu", "fake_<device>", "ibm_<device>"]
    assert all(cls.summary and cls.needs for cls in BACKENDS)


def test_exact_and_aer_evaluate_the_same_circuit_as_statevector(rng):
    tpl = qlam_sequence(qlam_cell(CellConfig(qubits=3)), 3)
    obs = [SparsePauliOp("ZII"), SparsePauliOp("XZY")]
    values = rng.uniform(-np.pi, np.pi, (4, tpl.circuit.num_parameters))
    want = np.array([[Statevector(tpl.circuit.assign_parameters(v)).expectation_value(o).real
                      for o in obs] for v in values])  # (B, K)
    for name in (EXACT, "aer"):
        got = resolve_backend(name).evaluate(tpl.circuit, obs, values)
        np.testing.assert_allclose(got, want, atol=1e-10, err_msg=name)


def test_fake_device_transpiles_to_its_active_qubits_with_noise():
    tpl = qlam_sequence(qlam_cell(CellConfig(qubits=3, entangler="cz")), 2)
    compiled = resolve_backend("fake_fez").transpile(tpl.circuit)
    assert compiled.noise_model is not None and compiled.circuit.num_qubits <= 6
    exact = resolve_backend(EXACT).transpile(tpl.circuit)
    assert exact.circuit is tpl.circuit and exact.noise_model is None


def test_what_a_backend_cannot_do_is_refused_in_one_line():
    aer = resolve_backend("aer")
    with pytest.raises(BackendError, match="--entanglement coupling follows a device"):
        aer.coupling_chain(3)
    with pytest.raises(BackendError, match="reports need a device target"):
        aer.qiskit_target
    with pytest.raises(BackendError, match="--dd only applies on ibm_<device>"):
        aer.estimator(RuntimeOptions(dynamical_decoupling=True))
    with pytest.raises(BackendError, match="runs no circuits"):
        generic_backend("cz,rz,sx,x", "ring:4").qiskit


def test_device_backends_give_a_coupled_chain_and_a_target():
    fez = resolve_backend("fake_fez")
    chain, ring = fez.coupling_chain(4)
    edges = {tuple(sorted(e)) for e in fez.qiskit.coupling_map.get_edges()}
    assert len(set(chain)) == 4 and all(tuple(sorted(p)) in edges for p in zip(chain, chain[1:]))
    assert fez.qiskit_target.num_qubits == fez.qiskit.num_qubits
    assert fez.calibration  # snapshots carry a calibration date: part of the ISA cache key
    gen = generic_backend("cz,rz,sx,x", "ring:5")
    chain, ring = gen.coupling_chain(5)
    assert ring and sorted(chain) == [0, 1, 2, 3, 4]
