"""The torch statevector engine against Qiskit (Statevector, Aer) and against its own slow paths."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from qiskit.circuit import Gate, Parameter, ParameterVector, QuantumCircuit
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.quantum_info import Statevector, random_statevector
from qiskit_aer.primitives import EstimatorV2 as AerEstimator

from qlam_qiskit.backends.engine.gates import GATES
from qlam_qiskit.errors import EngineError
from qlam_qiskit.backends.engine.product import product_form
from qlam_qiskit.backends.engine.reference import run_reference
from qlam_qiskit.backends.engine.scan import diag_unitary_scan, diag_unitary_scan_ref
from qlam_qiskit.backends.engine import CircuitProgram, ReadoutEngine, SequenceEngine
from qlam_qiskit.circuits.cell import CellConfig, CellTemplate, init_circuit, qlam_cell
from qlam_qiskit.circuits.readout import qlam_readout, query_observables
from qlam_qiskit.circuits.sequence import qlam_sequence, sequence_parameter_values

QISKIT = get_standard_gate_name_mapping()
TOL = {torch.complex128: 1e-10, torch.complex64: 1e-5}
REAL = {torch.complex128: torch.float64, torch.complex64: torch.float32}
DTYPES = [torch.complex128, torch.complex64]
DTYPE_IDS = ["c128", "c64"]

CONFIGS = [
    CellConfig(qubits=1, depth=1),
    CellConfig(qubits=2, depth=1, entangler="cx"),
    CellConfig(qubits=3, depth=0, entangler="cz", entanglement="ring"),
    CellConfig(qubits=3, depth=2, encoding="rz_zz", entangler="rzz", entanglement="full"),
    CellConfig(qubits=4, depth=1, encoding="ry_rz", entangler="cx", entanglement="linear"),
    CellConfig(qubits=4, depth=2, encoding="rz_zz", entangler="cz", entanglement="ring"),
    CellConfig(qubits=3, depth=2, encoding="ry_rz", entangler="rzz", entanglement="ring"),
    CellConfig(qubits=5, depth=1, encoding="rz", entangler="cz", entanglement="ring"),
    CellConfig(qubits=2, depth=1, encoding="rz_zz", entangler="cx", entanglement="full"),
]
STEPS = {1: 8, 2: 8, 3: 6, 4: 5, 5: 4}  # tokens per config, by qubit count
H, B, QUERIES = 2, 2, 2


def cfg_id(cfg: CellConfig) -> str:
    return f"n{cfg.qubits}-d{cfg.depth}-{cfg.encoding}-{cfg.entangler}-{cfg.entanglement}"


@functools.lru_cache(maxsize=None)
def qiskit_case(cfg: CellConfig, seed: int = 0):
    """Random θ (T, H, B, m), w (H, P), r (H, 3nK) and Qiskit's states and readouts for them."""
    rng = np.random.default_rng(seed + 100 * cfg.qubits + 10 * cfg.depth)
    steps, n = STEPS[cfg.qubits], cfg.qubits
    cell = qlam_cell(cfg)
    tpl = qlam_readout(n, QUERIES, correlators="pairs", pairs=cfg.entangling_pairs)
    theta = rng.uniform(-math.pi, math.pi, (steps, H, B, cfg.num_inputs))
    w = rng.uniform(-math.pi, math.pi, (H, cfg.num_weights))
    r = rng.uniform(-math.pi, math.pi, (H, len(tpl.weights)))
    states = np.empty((steps, H, B, 2**n), dtype=complex)
    evs = np.empty((steps, H, B, tpl.num_outputs))
    for t in range(1, steps + 1):
        seq = qlam_sequence(cell, t)
        for h in range(H):
            obs = query_observables(tpl, r[h])
            values = sequence_parameter_values(seq, theta[:t, h].transpose(1, 0, 2), w[h])  # (B, .)
            for b in range(B):
                sv = Statevector(seq.circuit.assign_parameters(values[b]))
                states[t - 1, h, b] = sv.data
                evs[t - 1, h, b] = [sv.expectation_value(o).real for o in obs]
    return cell, tpl, theta, w, r, states, evs


def _paths(cfg: CellConfig, device) -> list[str]:
    """The kernels that apply to a cell on a device: every one it supports, steps included."""
    kernels, tpl = ["dense", "dense-adjoint", "steps"], qlam_cell(cfg)
    if product_form(CircuitProgram(tpl.circuit, list(tpl.inputs), list(tpl.weights))) is not None:
        kernels += ["product"] + (["fused"] if device.type == "cpu" else [])
    return kernels


def to_torch(x: np.ndarray, dtype: torch.dtype, device) -> torch.Tensor:
    return torch.as_tensor(x, dtype=REAL[dtype], device=device)


# ----------------------------------------------------------------- engine vs Qiskit


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_engine_states_match_statevector(cfg, dtype, device):
    cell, _, theta, w, _, want, _ = qiskit_case(cfg)
    for kernel in _paths(cfg, device):
        eng = SequenceEngine(cell, init_circuit(cfg.qubits), dtype=dtype, kernel=kernel)
        got = eng.run(to_torch(theta, dtype, device), to_torch(w, dtype, device))
        assert got.shape == want.shape and got.dtype == dtype and got.device.type == device.type
        np.testing.assert_allclose(got.cpu().numpy(), want, rtol=0, atol=TOL[dtype])
        last = eng.run(to_torch(theta, dtype, device), to_torch(w, dtype, device), all_states=False)
        np.testing.assert_allclose(last.cpu().numpy(), want[-1], rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_readout_matches_statevector_expectations(cfg, dtype, device):
    _, tpl, _, _, r, states, want = qiskit_case(cfg)
    ro = ReadoutEngine(tpl, dtype=dtype)
    got = ro(torch.as_tensor(states, dtype=dtype, device=device), to_torch(r, dtype, device))
    assert got.shape == (states.shape[0], H, B, QUERIES, len(tpl.terms))
    assert not got.is_complex()
    np.testing.assert_allclose(got.reshape(want.shape).cpu().numpy(), want, rtol=0,
                               atol=TOL[dtype])
    # one token's states (H, B, D) give (H, B, K, M)
    one = ro(torch.as_tensor(states[-1], dtype=dtype, device=device), to_torch(r, dtype, device))
    np.testing.assert_allclose(one.reshape(want[-1].shape).cpu().numpy(), want[-1], rtol=0,
                               atol=TOL[dtype])


_AER = AerEstimator(options={"default_precision": 0, "backend_options": {"method": "statevector"}})


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cfg", CONFIGS[1::2], ids=cfg_id)
def test_engine_readout_matches_aer_estimator(cfg, dtype):
    cell, tpl, theta, w, r, _, _ = qiskit_case(cfg)
    steps = theta.shape[0]
    seq = qlam_sequence(cell, steps)
    eng = SequenceEngine(cell, init_circuit(cfg.qubits), dtype=dtype)
    ro = ReadoutEngine(tpl, dtype=dtype)
    got = ro(eng.run(to_torch(theta, dtype, "cpu"), to_torch(w, dtype, "cpu"), all_states=False),
             to_torch(r, dtype, "cpu")).reshape(H, B, -1).numpy()
    pubs = []
    for h in range(H):
        obs = [query_observables(tpl, r[h])]  # (1, K*M)
        values = sequence_parameter_values(seq, theta[:, h].transpose(1, 0, 2), w[h])[:, None]
        pubs.append((seq.circuit, obs, values))  # broadcasts to (B, K*M)
    for h, res in enumerate(_AER.run(pubs).result()):
        np.testing.assert_allclose(got[h], res.data.evs, rtol=0, atol=TOL[dtype])


# ----------------------------------------------------------------- generic circuits


def random_affine(rng, th, w):
    """An angle like 2·θ[0] - 0.5·w[1] + 0.3: random mix of an input, a weight and a constant."""
    kind = rng.integers(4)
    c = float(rng.uniform(-1, 1))
    a, b = float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))
    i, j = int(rng.integers(len(th))), int(rng.integers(len(w)))
    if kind == 0:
        return c * 3
    if kind == 1:
        return a * th[i] + c
    if kind == 2:
        return b * w[j] - c
    return a * th[i] + b * w[j] + c + 0.5 * th[(i + 1) % len(th)]


def random_circuit(rng, n, m=3, p=4, size=14, names=None):
    th, w = ParameterVector("θ", m), ParameterVector("w", p)
    names = names or [g for g in GATES if GATES[g][0] <= n]
    qc = QuantumCircuit(n)
    for _ in range(size):
        name = str(rng.choice(names))
        k, n_ang = GATES[name][:2]
        qubits = [int(q) for q in rng.permutation(n)[:k]]
        params = [random_affine(rng, th, w) for _ in range(n_ang)]
        qc.append(QISKIT[name].base_class(*params) if n_ang else QISKIT[name], qubits)
        if rng.random() < 0.1:
            qc.barrier()
    qc.global_phase = float(rng.uniform(-math.pi, math.pi))
    return qc, th, w


def check_program(qc, th, w, rng, dtype=torch.complex128, steps=2, heads=2, batch=2,
                  kernel="auto"):
    """Run qc as the cell for ``steps`` tokens from random states; compare with Statevector."""
    n = qc.num_qubits
    cell = CellTemplate(CellConfig(qubits=n), qc, th, w)
    eng = SequenceEngine(cell, None, dtype=dtype, kernel=kernel)
    theta = rng.uniform(-math.pi, math.pi, (steps, heads, batch, len(th)))
    wv = rng.uniform(-math.pi, math.pi, (heads, len(w)))
    psi0 = np.stack([[random_statevector(2**n, seed=int(rng.integers(2**31))).data
                      for _ in range(batch)] for _ in range(heads)])  # (H, B, D)
    got = eng.run(to_torch(theta, dtype, "cpu"), to_torch(wv, dtype, "cpu"),
                  torch.as_tensor(psi0, dtype=dtype)).numpy()
    for h in range(heads):
        for b in range(batch):
            sv = Statevector(psi0[h, b])
            for t in range(steps):
                binding = {**dict(zip(th, theta[t, h, b])), **dict(zip(w, wv[h]))}
                sv = sv.evolve(qc.assign_parameters(
                    {k: v for k, v in binding.items() if k in qc.parameters}))
                np.testing.assert_allclose(got[t, h, b], sv.data, rtol=0, atol=TOL[dtype],
                                           err_msg=f"token {t} head {h} sample {b}")
    return eng


@pytest.mark.parametrize("seed", range(8))
def test_circuit_program_random_circuits(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5))
    qc, th, w = random_circuit(rng, n)
    check_program(qc, th, w, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("two_qubit", [False, True])
def test_circuit_program_diag_then_fixed_uses_fast_scan(two_qubit, dtype):
    """Input-dependent diagonal gates then fixed gates: the fused-scan shape, global phase included."""
    rng = np.random.default_rng(7 + two_qubit)
    n = 3
    diag = ["rz", "p", "u1"] + (["rzz", "cp", "crz", "cu1", "global_phase"] if two_qubit else [])
    th, w = ParameterVector("θ", 4), ParameterVector("w", 3)
    qc = QuantumCircuit(n)
    for i in range(6):
        name = diag[i % len(diag)]
        k = GATES[name][0]
        qc.append(QISKIT[name].base_class(2 * th[i % 4] - 0.5 * w[1] + 0.3),
                  [int(q) for q in rng.permutation(n)[:k]])
    fixed, fth, fw = random_circuit(rng, n, size=8)
    fixed = fixed.assign_parameters({**dict(zip(fth, rng.uniform(size=3))),
                                     **dict(zip(fw, [w[0], w[2], w[1], w[0]]))}, strict=False)
    qc.compose(fixed, inplace=True)  # only weights and constants: one fixed block
    qc.global_phase = 0.4
    prog = CircuitProgram(qc, list(th), list(w))
    assert prog.kinds == ["diag", "fixed"]
    kernels = ["auto", "dense", "dense-adjoint", "steps"]
    if product_form(prog) is not None:
        kernels += ["product", "fused"]
    for kernel in kernels:
        check_program(qc, th, w, rng, dtype=dtype, steps=3, kernel=kernel)


def test_circuit_program_segments():
    th, w = ParameterVector("θ", 2), ParameterVector("w", 2)
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.ry(w[0], 1)
    qc.rz(th[0], 0)
    qc.rzz(th[1] + w[1], 0, 1)
    qc.rx(th[0], 1)
    qc.cz(0, 1)
    qc.rzz(th[1], 1, 0)
    prog = CircuitProgram(qc, list(th), list(w))
    # an input run is 'diag' only when every gate in it is diagonal
    assert prog.kinds == ["fixed", "gates", "fixed", "diag"]
    assert [len(s.gates) for s in prog.segments] == [2, 3, 1, 1]


def _program_error(qc, th=(), w=()):
    with pytest.raises(EngineError) as info:
        CircuitProgram(qc, list(th), list(w))
    return str(info.value)


def test_unsupported_instructions_raise_one_line_engine_error():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.append(Gate("mystery", 2, []), [1, 0])  # not standard, no definition
    msg = _program_error(qc)
    assert "'mystery' at instruction 1" in msg and "not a Qiskit standard gate" in msg
    assert "circuit.decompose()" in msg and "transpile(" in msg and "\n" not in msg
    for name in ("measure", "reset"):
        qc = QuantumCircuit(2, 2)
        qc.h(0)
        getattr(qc, name)(*((0, 0) if name == "measure" else (0,)))
        msg = _program_error(qc)
        assert f"'{name}' at instruction 1" in msg and "not a unitary gate" in msg
        assert "\n" not in msg
    inner = QuantumCircuit(2, 1)
    inner.measure(1, 0)
    qc = QuantumCircuit(2, 1)
    qc.append(inner.to_instruction(), [0, 1], [0])  # a sub-circuit holding a measurement
    assert "'measure' at instruction 0" in _program_error(qc)


@pytest.mark.parametrize("angle", ["product", "sin", "square"])
def test_non_affine_angles_raise_engine_error(angle):
    th, w = ParameterVector("θ", 1), ParameterVector("w", 1)
    expr = {"product": th[0] * w[0], "sin": th[0].sin() + 1, "square": w[0] * w[0]}[angle]
    qc = QuantumCircuit(1)
    qc.rz(expr, 0)
    msg = _program_error(qc, th, w)
    assert "not affine" in msg and "rz at instruction 0" in msg and "a·θ + b·w + c" in msg


def test_unknown_parameter_raises_engine_error():
    th, w = ParameterVector("θ", 1), ParameterVector("w", 1)
    qc = QuantumCircuit(1)
    qc.rz(th[0] + Parameter("stray"), 0)
    assert "neither an input nor a weight" in _program_error(qc, th, w)
    qc = QuantumCircuit(1)
    qc.rz(th[0], 0)
    qc.global_phase = th[0] * w[0]
    assert "not affine" in _program_error(qc, th, w)


def test_run_rejects_wrong_shapes():
    eng = SequenceEngine(qlam_cell(CellConfig(qubits=2)), init_circuit(2), dtype="complex128")
    with pytest.raises(EngineError, match="expected θ"):
        eng.run(torch.zeros(3, 1, 2, 5), torch.zeros(1, 4))
    with pytest.raises(EngineError, match="expected θ"):
        eng.run(torch.zeros(3, 2, 2, 2), torch.zeros(1, 4))
    with pytest.raises(EngineError, match="dtype must be"):
        SequenceEngine(qlam_cell(CellConfig(qubits=2)), dtype="float32")


# ----------------------------------------------------------------- fused scan


def random_scan_inputs(rng, steps, heads, batch, d, dtype, device="cpu"):
    def cplx(*shape):
        return torch.complex(torch.as_tensor(rng.normal(size=shape)),
                             torch.as_tensor(rng.normal(size=shape))).to(dtype).to(device)

    psi0 = cplx(heads, batch, d)
    phases = torch.polar(torch.ones(()), torch.as_tensor(rng.uniform(-3, 3, (steps, heads, batch, d)),
                                                         dtype=torch.float32))
    d_t = phases.to(dtype).to(device) * (1 + 0.1 * cplx(steps, heads, batch, d))  # not only phases
    mt = torch.linalg.qr(cplx(heads, d, d))[0]
    return psi0, d_t, mt, cplx(steps, heads, batch, d)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_fast_scan_matches_reference(dtype, device, rng):
    psi0, d, mt, g_out = random_scan_inputs(rng, 9, 2, 3, 8, dtype, device)
    ins = [x.clone().requires_grad_() for x in (psi0, d, mt)]
    ref_ins = [x.clone().requires_grad_() for x in (psi0, d, mt)]
    out, ref = diag_unitary_scan(*ins), diag_unitary_scan_ref(*ref_ins)
    assert out.shape == ref.shape == (9, 2, 3, 8)
    torch.testing.assert_close(out, ref, rtol=0, atol=TOL[dtype])
    grads = torch.autograd.grad(out, ins, g_out)
    ref_grads = torch.autograd.grad(ref, ref_ins, g_out)
    for name, g, rg in zip(("psi0", "d", "mt"), grads, ref_grads):
        scale = max(1.0, rg.abs().max().item())
        torch.testing.assert_close(g, rg, rtol=0, atol=TOL[dtype] * scale, msg=name)


def test_fast_scan_gradcheck(rng):
    psi0, d, mt, _ = random_scan_inputs(rng, 3, 2, 2, 2, torch.complex128)
    ins = tuple(x.clone().requires_grad_() for x in (psi0, d, mt))
    assert torch.autograd.gradcheck(diag_unitary_scan, ins, eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(diag_unitary_scan_ref, ins, eps=1e-6, atol=1e-7)


# ----------------------------------------------------------------- fast vs slow vs reference


def _loss_of_states(states: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (torch.view_as_real(states) * weights).sum()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c.qubits <= 4], ids=cfg_id)
def test_fast_slow_and_reference_agree_with_gradients(cfg, dtype, device):
    cell, _, theta, w, _, _, _ = qiskit_case(cfg)
    init = init_circuit(cfg.qubits)
    gen = torch.Generator().manual_seed(cfg.qubits)
    lw = torch.randn(theta.shape[:3] + (2**cfg.qubits, 2), generator=gen, dtype=torch.float64)
    lw = lw.to(device=device, dtype=REAL[dtype])
    results = []
    for path in [None] + _paths(cfg, device):
        th = to_torch(theta, dtype, device).requires_grad_()
        wt = to_torch(w, dtype, device).requires_grad_()
        if path is None:
            states = run_reference(cell, th, wt, init, dtype=dtype)
        else:
            states = SequenceEngine(cell, init, dtype=dtype, kernel=path).run(th, wt)
        loss = _loss_of_states(states, lw)
        g_th, g_w = torch.autograd.grad(loss, [th, wt], allow_unused=True)
        results.append((states.detach(), g_th, torch.zeros_like(wt) if g_w is None else g_w))
    (s0, gt0, gw0) = results[0]
    for states, g_th, g_w in results[1:]:
        torch.testing.assert_close(states, s0, rtol=0, atol=TOL[dtype])
        scale = max([1.0] + [g.abs().max().item() for g in (gt0, gw0) if g.numel()])
        torch.testing.assert_close(g_th, gt0, rtol=0, atol=TOL[dtype] * scale)
        torch.testing.assert_close(g_w, gw0, rtol=0, atol=TOL[dtype] * scale)


# ----------------------------------------------------------------- gradients vs finite differences


@pytest.mark.parametrize("cfg", [CONFIGS[3], CONFIGS[4], CONFIGS[1]], ids=cfg_id)
def test_readout_gradients_match_finite_differences(cfg):
    rng = np.random.default_rng(3)
    steps, n = 3, cfg.qubits
    cell = qlam_cell(cfg)
    tpl = qlam_readout(n, 2, correlators="pairs", pairs=cfg.entangling_pairs)
    eng = SequenceEngine(cell, init_circuit(n), dtype="complex128")
    ro = ReadoutEngine(tpl, dtype="complex128")
    theta = torch.as_tensor(rng.uniform(-3, 3, (steps, 2, 2, cfg.num_inputs)))
    assert cfg.num_weights > 0
    w = torch.as_tensor(rng.uniform(-3, 3, (2, cfg.num_weights)))
    r = torch.as_tensor(rng.uniform(-3, 3, (2, len(tpl.weights))))
    c = torch.as_tensor(rng.normal(size=(steps, 2, 2, 2, len(tpl.terms))))

    def f(theta, w, r):
        return (ro(eng.run(theta, w), r) * c).sum()

    args = [x.clone().requires_grad_() for x in (theta, w, r)]
    grads = torch.autograd.grad(f(*args), args)
    eps = 1e-6
    with torch.no_grad():
        for k, (x, g) in enumerate(zip((theta, w, r), grads)):
            picks = rng.permutation(x.numel())[:12]  # a random subset keeps the test fast
            fd = torch.empty(len(picks), dtype=x.dtype)
            for pos, i in enumerate(picks):
                plus, minus = [a.clone() for a in (theta, w, r)], [a.clone() for a in (theta, w, r)]
                plus[k].view(-1)[i] += eps
                minus[k].view(-1)[i] -= eps
                fd[pos] = (f(*plus) - f(*minus)) / (2 * eps)
            torch.testing.assert_close(g.reshape(-1)[picks], fd, rtol=1e-6, atol=1e-7,
                                       msg=f"argument {k}")


# ----------------------------------------------------------------- heads


@pytest.mark.parametrize("cfg", [CONFIGS[5], CONFIGS[6]], ids=cfg_id)
def test_heads_equal_separate_single_head_runs(cfg):
    rng = np.random.default_rng(5)
    heads, n = 3, cfg.qubits
    cell = qlam_cell(cfg)
    tpl = qlam_readout(n, 2, correlators="all")
    eng = SequenceEngine(cell, init_circuit(n), dtype="complex128")
    ro = ReadoutEngine(tpl, dtype="complex128")
    theta = torch.as_tensor(rng.uniform(-3, 3, (4, heads, 2, cfg.num_inputs)))
    w = torch.as_tensor(rng.uniform(-3, 3, (heads, cfg.num_weights)))
    r = torch.as_tensor(rng.uniform(-3, 3, (heads, len(tpl.weights))))
    states = eng.run(theta, w)
    evs = ro(states, r)
    for h in range(heads):
        s1 = eng.run(theta[:, h:h + 1], w[h:h + 1])
        torch.testing.assert_close(states[:, h:h + 1], s1, rtol=0, atol=1e-12)
        torch.testing.assert_close(evs[:, h:h + 1], ro(s1, r[h:h + 1]), rtol=0, atol=1e-12)
    assert not torch.allclose(states[:, 0], states[:, 1])  # heads really differ
