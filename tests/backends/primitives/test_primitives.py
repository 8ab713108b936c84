"""The primitives path: readout expansion, broadcast PUBs, batched gradients, transpile cache,
reduced noise models, and the backend checks that must fail clearly without a GPU or account."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from qiskit.quantum_info import SparsePauliOp, Statevector

from qlam_qiskit.backends import BackendError, resolve_backend
from qlam_qiskit.backends.primitives import devices
from qlam_qiskit.backends.primitives.estimator import RuntimeOptions, expectation_values
from qlam_qiskit.backends.primitives.qnn import ShiftGradient, SPSAGradient
from qlam_qiskit.backends.primitives.transpile import TranspileOptions
from qlam_qiskit.circuits.cell import CellConfig, qlam_cell
from qlam_qiskit.circuits.readout import qlam_readout, query_observables
from qlam_qiskit.circuits.sequence import qlam_sequence
from qlam_qiskit.models import ModelConfig, QLAMClassifier
from qlam_qiskit.models.primitive import (PrimitiveQLAM, attach_backend, hardware_problem,
                                          pauli_observables, pauli_readout)

HW = ModelConfig(layers=1, heads=1, pool="last", qubits=3, d_model=6, queries=2, max_len=3,
                 dtype="complex128")


@pytest.fixture(autouse=True)
def isa_cache(tmp_path, monkeypatch):
    """Every test gets its own ISA cache folder."""
    monkeypatch.setenv("QLAM_CACHE_DIR", str(tmp_path / "isa"))


def models(seed: int = 0, cfg: ModelConfig = HW) -> tuple[QLAMClassifier, PrimitiveQLAM]:
    torch.manual_seed(seed)
    exact = QLAMClassifier(cfg).double()
    prim = PrimitiveQLAM(cfg).double()
    prim.load_state_dict(exact.state_dict())
    return exact, prim


def test_pauli_readout_equals_learned_basis_observables(rng):
    n, k = 3, 2
    tpl = qlam_readout(n, k, correlators="all")
    r = rng.uniform(-np.pi, np.pi, 3 * n * k)
    psi = Statevector(rng.normal(size=8) + 1j * rng.normal(size=8)).evolve(np.eye(8))
    psi = Statevector(psi.data / np.linalg.norm(psi.data))
    e = torch.tensor([[psi.expectation_value(op).real
                       for op in pauli_observables(n, tpl.terms)]])  # (1, E)
    got = pauli_readout(e, torch.tensor(r), n, tpl.terms)[0].numpy()
    want = [psi.expectation_value(op).real for op in query_observables(tpl, r)]
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("gate", [False, True], ids=["ungated", "gated"])
def test_aer_logits_and_gradients_equal_the_exact_engine(gate):
    exact, prim = models(cfg=replace(HW, gate=gate))
    x = torch.randn(4, 3, 1, dtype=torch.float64)
    qnn, _ = attach_backend(prim, resolve_backend("aer"), 3)
    with torch.no_grad():
        np.testing.assert_allclose(prim(x).numpy(), exact(x).numpy(), atol=1e-10)
    assert qnn.calls["forward"] == 1  # one broadcast PUB for the whole batch
    exact.float(), prim.float()
    exact(x.float()).square().sum().backward()
    prim(x.float()).square().sum().backward()  # TorchConnector: float32
    assert qnn.calls["backward"] == 1
    for (name, a), (_, b) in zip(prim.named_parameters(), exact.named_parameters()):
        assert a.grad is not None, name  # upstream layers get gradients (input_gradients)
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=2e-4 *
                                   max(1.0, b.grad.abs().max().item()), err_msg=name)


def test_each_pass_is_one_estimator_job(monkeypatch):
    _, prim = models()
    qnn, _ = attach_backend(prim, resolve_backend("aer"), 3)
    runs = []
    real = qnn.estimator.run
    monkeypatch.setattr(qnn.estimator, "run", lambda pubs, **kw: runs.append(len(pubs))
                        or real(pubs, **kw))
    prim.float()
    prim(torch.randn(5, 3, 1)).sum().backward()
    assert runs == [1, 1]  # forward PUB, gradient PUB: K observables x B samples broadcast


def test_spsa_with_one_parameter_is_a_central_difference(rng):
    tpl = qlam_sequence(qlam_cell(CellConfig(qubits=2, entangler="rzz")), 2)
    est = resolve_backend("aer").estimator()
    obs = [SparsePauliOp("ZZ"), SparsePauliOp("XI")]
    values = rng.uniform(-1, 1, (3, tpl.circuit.num_parameters))
    wrt = np.array([2])
    shift = ShiftGradient()(est, tpl.circuit, obs, values, wrt)  # (B, K, 1)
    spsa = SPSAGradient(epsilon=1e-4)(est, tpl.circuit, obs, values, wrt)
    assert shift.shape == spsa.shape == (3, 2, 1)
    np.testing.assert_allclose(spsa, shift, atol=1e-6)
    assert np.abs(shift).max() > 1e-3  # a real derivative, not zeros


def test_isa_circuit_is_cached_by_template_backend_and_options():
    tpl = qlam_sequence(qlam_cell(CellConfig(qubits=3)), 2)
    target = resolve_backend("fake_fez")
    first = target.transpile(tpl.circuit)
    again = target.transpile(tpl.circuit)
    other = target.transpile(tpl.circuit, TranspileOptions(optimization_level=0))
    assert (first.cached, again.cached, other.cached) == (False, True, False)
    assert again.circuit == first.circuit and again.final == first.final
    assert first.circuit.num_qubits == len(first.physical) <= 6  # only the active qubits


def test_reduced_noise_model_matches_the_full_device(rng):
    """Cut to its active qubits, a fake device gives the full-device noisy values."""
    from qiskit_aer.noise import NoiseModel
    from qiskit_aer.primitives import EstimatorV2

    from qlam_qiskit.backends.primitives.transpile import isa_circuit

    tpl = qlam_sequence(qlam_cell(CellConfig(qubits=2, entangler="cx")), 2)
    target = resolve_backend("fake_manila")  # 5 qubits: the full device fits a density matrix
    obs = [SparsePauliOp("ZI"), SparsePauliOp("XX")]
    values = rng.uniform(-1, 1, (2, tpl.circuit.num_parameters))
    compiled = target.transpile(tpl.circuit, cache=False)
    small = expectation_values(target.estimator(noise_model=compiled.noise_model),
                               compiled.circuit, compiled.map_observables(obs), values)
    isa, _ = isa_circuit(tpl.circuit, target.qiskit, name=target.name, cache=False)
    full = EstimatorV2(options={"default_precision": 0, "backend_options": {
        "method": "density_matrix", "noise_model": NoiseModel.from_backend(target.qiskit)}})
    want = expectation_values(full, isa, [o.apply_layout(isa.layout) for o in obs], values)
    np.testing.assert_allclose(small, want, atol=1e-10)
    ideal = expectation_values(resolve_backend("aer").estimator(), tpl.circuit, obs, values)
    assert np.abs(small - ideal).max() > 1e-4  # the noise is really there


def test_hardware_problem_names_the_fix():
    assert hardware_problem(HW) is None
    msg = hardware_problem(ModelConfig(layers=2, heads=8))
    assert "layers=2" in msg and "heads=8" in msg and "--layers 1 --heads 1 --pool last" in msg
    with pytest.raises(ValueError, match="not hardware-compatible"):
        PrimitiveQLAM(ModelConfig())


def test_device_only_options_are_refused_locally():
    with pytest.raises(ValueError, match="--twirling only applies on ibm_<device>"):
        resolve_backend("aer").estimator(RuntimeOptions(twirling=True))
    assert RuntimeOptions(shots=10_000).effective_precision == pytest.approx(0.01)
    assert RuntimeOptions().effective_precision == 0.0


def test_aer_gpu_refused_with_the_fix_when_missing(monkeypatch):
    if devices.gpu_problem() is None:
        pytest.skip("a working GPU build of qiskit-aer is here; see test_aer_gpu_runs")
    with pytest.raises(BackendError, match="aer_gpu: .*qiskit-aer-gpu"):
        resolve_backend("aer_gpu").require()
    # a GPU build without a driver: the real-run check, not available_devices(), decides
    import qiskit_aer

    monkeypatch.setattr(qiskit_aer.AerSimulator, "available_devices",
                        lambda self: ("CPU", "GPU"))
    monkeypatch.setattr(devices.shutil, "which", lambda name: None)
    with pytest.raises(BackendError, match="no NVIDIA driver"):
        resolve_backend("aer_gpu").require()


def test_aer_gpu_runs():
    if devices.gpu_problem() is not None:
        pytest.skip(f"needs qiskit-aer-gpu and an NVIDIA GPU: {devices.gpu_problem()}")
    exact, prim = models()
    x = torch.randn(3, 3, 1, dtype=torch.float64)
    attach_backend(prim, resolve_backend("aer_gpu").require(), 3)
    with torch.no_grad():
        np.testing.assert_allclose(prim(x).numpy(), exact(x).numpy(), atol=1e-8)


def test_ibm_backends_fail_clearly_without_account_or_network(monkeypatch):
    from qiskit_ibm_runtime.accounts import AccountManager, AccountNotFoundError

    def no_account(**kw):
        raise AccountNotFoundError("none")

    monkeypatch.setattr(AccountManager, "get", staticmethod(no_account))
    with pytest.raises(BackendError, match="qlam-qiskit account save"):
        resolve_backend("ibm_fez").require()
    monkeypatch.setattr(AccountManager, "get", staticmethod(lambda **kw: object()))

    def offline(*a, **kw):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(devices.socket, "create_connection", offline)
    with pytest.raises(BackendError, match="cannot reach quantum.cloud.ibm.com") as err:
        resolve_backend("ibm_fez").require()
    assert "invalid token" not in str(err.value) and "token was not checked" in str(err.value)


def test_unknown_fake_device_lists_real_ones():
    with pytest.raises(BackendError, match="no fake device 'nowhere'.*fake_"):
        resolve_backend("fake_nowhere").require()


@pytest.mark.parametrize("n", [4, 6])
def test_coupling_entanglement_routes_without_swaps_on_fake_fez(n):
    from qlam_qiskit.backends.primitives.layouts import chain_pairs, coupling_chain
    from qlam_qiskit.backends.primitives.transpile import routing_swaps

    target = resolve_backend("fake_fez")
    layout, ring = coupling_chain(target.qiskit_target, n)
    assert len(set(layout)) == n
    coupled = {tuple(sorted(q)) for q in target.qiskit.coupling_map.get_edges()}
    pairs = chain_pairs(n, ring)
    assert all(tuple(sorted((layout[a], layout[b]))) in coupled for a, b in pairs)
    steps = 3
    chain = qlam_sequence(qlam_cell(CellConfig(qubits=n, entangler="cz", pairs=pairs)), steps)
    opts = TranspileOptions(initial_layout=layout)
    assert routing_swaps(chain.circuit, target.qiskit, opts) == 0
    assert target.transpile(chain.circuit, opts).two_qubit_gates == steps * len(pairs)
    ring_cell = qlam_sequence(qlam_cell(CellConfig(qubits=n, entangler="cz")), steps)
    assert routing_swaps(ring_cell.circuit, target.qiskit) > 0  # the default ring needs SWAPs here
