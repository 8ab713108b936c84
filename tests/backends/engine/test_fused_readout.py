"""The readout fused into the product-form scan (``fused_readout.py``) against its plain-autograd
reference, the engine's unfused path and Qiskit-free identities; its memory and determinism."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit

from qlam_qiskit.backends.engine import CircuitProgram, ReadoutEngine, SequenceEngine, fused_readout
from qlam_qiskit.backends.engine.product import product_form, product_readout_ref
from qlam_qiskit.circuits.cell import CellConfig, CellTemplate, init_circuit, qlam_cell
from qlam_qiskit.circuits.readout import qlam_readout
from qlam_qiskit.errors import EngineError

pytestmark = pytest.mark.skipif(not fused_readout.available(), reason="needs numba")

NAMES = ("readouts", "dψ0", "dδ", "dU", "de", "dr")


def _case(cfg: CellConfig, correlators: str, queries: int, t: int, h: int, b: int,
          dtype: torch.dtype, seed: int = 0):
    """Arguments of ``product_readout`` for a cell (random normalized ψ0, relative phases δ,
    the cell's U and e for random weights) with the readout weights r in place of the query
    rotations R (R is a unitary function of r: the kernel reads R† Z R), and the readout."""
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    g = torch.Generator().manual_seed(seed)
    tpl = qlam_cell(cfg)
    form = product_form(CircuitProgram(tpl.circuit, list(tpl.inputs), list(tpl.weights)))
    w = torch.randn(h, cfg.num_weights, generator=g, dtype=torch.float64)
    u, e = form.unitaries(w, torch.complex128)
    ro = ReadoutEngine(qlam_readout(cfg.qubits, queries, correlators=correlators,
                                    pairs=cfg.entangling_pairs), dtype="complex128")
    r = torch.rand(h, 3 * cfg.qubits * queries, generator=g, dtype=torch.float64) * 6.3
    psi0 = torch.randn(h, b, 2**cfg.qubits, generator=g, dtype=torch.complex128)
    psi0 = psi0 / psi0.norm(dim=-1, keepdim=True)
    delta = torch.rand(h, cfg.qubits, t, b, generator=g, dtype=torch.float64) * 6.3
    args = [psi0, delta, u, e, r]
    args = [a.to(dtype if a.is_complex() else real).requires_grad_() for a in args]
    return args, ro


def _value_and_grads(fn, args, ro, **kw):
    psi0, delta, u, e, r = args
    out = fn(psi0, delta, u, e, ro.qubit_rotations(r), ro.template.terms, **kw)
    wr = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    loss = (out * wr.to(out.dtype)).sum()
    return [out.detach()] + list(torch.autograd.grad(loss, args))


def _reference(args, ro):
    exact = [a.detach().to(torch.complex128 if a.is_complex() else torch.float64).requires_grad_()
             for a in args]
    return _value_and_grads(product_readout_ref, exact, ro)


CELLS = [(CellConfig(qubits=3), "pairs", 2),  # the default model's memory
         (CellConfig(qubits=4, depth=2, entangler="rzz"), "all", 3),
         (CellConfig(qubits=2, entanglement="linear", entangler="cz"), "none", 1),
         (CellConfig(qubits=1, entanglement="none"), "pairs", 2)]


@pytest.mark.parametrize("dtype, tol", [(torch.complex128, 1e-10), (torch.complex64, 1e-5)],
                         ids=["c128", "c64"])
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"n{c[0].qubits}-{c[1]}-k{c[2]}")
@pytest.mark.parametrize("batch", [1, 5, 33])  # ragged: lanes do not divide the batch evenly
@pytest.mark.parametrize("bits", ["256", "512"])  # LLVM splits 512-bit vectors where AVX-512 lacks
def test_fused_readout_matches_reference_values_and_gradients(cell, batch, dtype, tol, bits,
                                                              monkeypatch):
    monkeypatch.setenv("QLAM_VECTOR_BITS", bits)
    assert fused_readout.vector_bits() == int(bits)
    cfg, correlators, queries = cell
    args, ro = _case(cfg, correlators, queries, 37, 2, batch, dtype)  # anchors at 32: a restart
    got = _value_and_grads(fused_readout.product_readout, args, ro)
    want = _reference(args, ro)
    for name, a, b in zip(NAMES, got, want):
        assert a.shape == b.shape, name
        scale = max(1.0, b.abs().max().item())
        err = (a.to(b.dtype) - b).abs().max().item()
        assert err < tol * scale, f"{name}: {err:.2e}"


def test_anchors_restart_the_walk_and_keep_gradients():
    args, ro = _case(CellConfig(qubits=3), "pairs", 2, 50, 1, 3, torch.complex128)
    plain = _value_and_grads(fused_readout.product_readout, args, ro, anchor_every=0)
    anchored = _value_and_grads(fused_readout.product_readout, args, ro, anchor_every=8)
    for a, b in zip(plain, anchored):
        assert (a - b).abs().max().item() < 1e-12 * max(1.0, b.abs().max().item())


def test_drift_at_t1024_complex64_stays_at_float32_roundoff():
    """Over 1024 tokens in complex64 the adjoint walk (restarting every 32 tokens) stays within
    the round-off of float32 arithmetic of the complex128 truth."""
    args, ro = _case(CellConfig(qubits=3), "pairs", 2, 1024, 1, 4, torch.complex64, seed=5)
    got = _value_and_grads(fused_readout.product_readout, args, ro)
    want = _reference(args, ro)
    for name, a, b in zip(NAMES, got, want):
        rel = ((a.to(b.dtype) - b).abs().max() / b.abs().max()).item()
        assert rel < 1e-4, f"{name}: {rel:.1e}"


def test_bit_identical_across_calls_and_thread_counts():
    args, ro = _case(CellConfig(qubits=3), "pairs", 2, 40, 3, 70, torch.complex64)
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            runs.append(_value_and_grads(fused_readout.product_readout, args, ro))
    finally:
        torch.set_num_threads(threads)
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)


def test_a_just_compiled_driver_gives_the_bits_of_a_cached_one(tmp_path):
    """The numba driver and the LLVM token code compiled afresh (empty cache folders) in one
    process, loaded from those caches in a second, and as this process has them: the same bits."""
    script = textwrap.dedent(f"""
        import hashlib, sys, torch
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from test_fused_readout import _case, _value_and_grads
        from qlam_qiskit.backends.engine import fused_readout
        from qlam_qiskit.circuits.cell import CellConfig
        args, ro = _case(CellConfig(qubits=3), "pairs", 2, 40, 2, 9, torch.complex64)
        out = _value_and_grads(fused_readout.product_readout, args, ro)
        print(hashlib.sha256(b"".join(o.numpy().tobytes() for o in out)).hexdigest())
    """)
    env = {**__import__("os").environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "QLAM_KERNEL_CACHE": str(tmp_path / "llvm")}
    digests = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, check=True).stdout.strip() for _ in range(2)]
    here = _value_and_grads(fused_readout.product_readout,
                            *_case(CellConfig(qubits=3), "pairs", 2, 40, 2, 9, torch.complex64))
    import hashlib
    mine = hashlib.sha256(b"".join(o.numpy().tobytes() for o in here)).hexdigest()
    assert digests[0] == digests[1] == mine


def test_query_axes_are_the_rotated_z():
    g = torch.Generator().manual_seed(3)
    ru = torch.linalg.qr(torch.randn(2, 3, 4, 2, 2, generator=g, dtype=torch.complex128))[0]
    axes = fused_readout.query_axes(ru)  # (H, K, n, 3)
    paulis = torch.tensor([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]],
                          dtype=torch.complex128)
    want = ru.mH @ paulis[2] @ ru  # R† Z R
    got = torch.einsum("hkqa,aij->hkqij", axes.to(torch.complex128), paulis)
    assert (got - want).abs().max().item() < 1e-12
    assert (axes.norm(dim=-1) - 1).abs().max().item() < 1e-12


def _engine_case(tpl: CellTemplate, correlators: str = "pairs", queries: int = 2, seed: int = 1):
    eng = SequenceEngine(tpl, init_circuit(tpl.num_qubits), dtype="complex128", kernel="fused")
    ro = ReadoutEngine(qlam_readout(tpl.num_qubits, queries, correlators=correlators,
                                    pairs=tpl.entangling_pairs), dtype="complex128")
    g = torch.Generator().manual_seed(seed)
    h, t, b = 2, 6, 3
    theta = torch.randn(t, h, b, len(tpl.inputs), generator=g, dtype=torch.float64)
    w = torch.randn(h, len(tpl.weights), generator=g, dtype=torch.float64)
    r = torch.randn(h, len(ro.template.weights), generator=g, dtype=torch.float64)
    return eng, ro, theta, w, r


def _read_from_theta(eng, ro, theta, w, r):
    p, c = eng.relative_phases(w)  # δ = θ P + c
    delta = (theta @ p + c[None, :, None, :]).permute(1, 3, 0, 2)  # (H, n, T, B)
    return eng.read(delta, w, ro, r)  # (H, K, M, T, B)


@pytest.mark.parametrize("cfg", [CellConfig(qubits=3), CellConfig(qubits=4, depth=2),
                                 CellConfig(qubits=3, entangler="cz", entanglement="linear")],
                         ids=lambda c: f"n{c.qubits}-d{c.depth}-{c.entangler}")
def test_engine_read_equals_unfused_run_then_readout(cfg):
    eng, ro, theta, w, r = _engine_case(qlam_cell(cfg))
    assert eng.reads_fused(torch.device("cpu"), ro)
    got = _read_from_theta(eng, ro, theta, w, r)
    want = ro(eng.run(theta, w, all_states=True), r)  # (T, H, B, K, M)
    assert (got - want.permute(1, 3, 4, 0, 2)).abs().max().item() < 1e-12


def test_relative_phases_of_any_diagonal_input_gates():
    """Input gates with phases on |0> and |1> (RZ, P, RZ with a weight offset), a global phase,
    U/SX/CP mixing in two layers: the relative form drops only a global phase per token."""
    th, wv = ParameterVector("x", 3), ParameterVector("w", 4)
    qc = QuantumCircuit(3, global_phase=0.3)
    qc.rz(th[0], 0)
    qc.p(2 * th[1] + 0.1, 1)
    qc.rz(th[2] - wv[0], 2)
    qc.u(wv[1], wv[2], 0.4, 0)
    qc.sx(1)
    qc.cp(wv[3], 0, 2)
    qc.cz(1, 2)
    qc.ry(wv[0], 1)
    qc.rz(0.5, 2)
    tpl = CellTemplate(CellConfig(qubits=3), qc, th, wv)
    eng, ro, theta, w, r = _engine_case(tpl, correlators="all")
    got = _read_from_theta(eng, ro, theta, w, r)
    want = ro(eng.run(theta, w, all_states=True), r)
    assert (got - want.permute(1, 3, 4, 0, 2)).abs().max().item() < 1e-12


def test_cells_and_readouts_it_does_not_read_take_the_unfused_path():
    cpu = torch.device("cpu")
    wide = SequenceEngine(qlam_cell(CellConfig(qubits=fused_readout.MAX_QUBITS + 1)), kernel="fused")
    ro_wide = ReadoutEngine(qlam_readout(fused_readout.MAX_QUBITS + 1, 1))
    assert not wide.reads_fused(cpu, ro_wide)
    dense = SequenceEngine(qlam_cell(CellConfig(qubits=3, entangler="cx")))  # no product form
    assert not dense.reads_fused(cpu, ReadoutEngine(qlam_readout(3, 1)))
    product = SequenceEngine(qlam_cell(CellConfig(qubits=3)), kernel="product")
    assert not product.reads_fused(cpu, ReadoutEngine(qlam_readout(3, 1)))
    with pytest.raises(EngineError, match="read\\(\\) needs the fused kernel"):
        product.read(torch.zeros(1, 3, 2, 1), torch.zeros(1, 9), ReadoutEngine(qlam_readout(3, 1)),
                     torch.zeros(1, 9))
    assert not fused_readout.supports(3, ((0, 1, 2),))  # a three-qubit Z term


def test_saves_nothing_of_state_size_per_token():
    """Autograd keeps cos/sin of δ (2n reals per token and sample) and every 32nd state, never
    the T·B·H·2^n states: the saved bytes grow by less than one state per token."""
    cfg = CellConfig(qubits=5)
    sizes = {}
    for t in (64, 192):
        args, ro = _case(cfg, "pairs", 2, t, 2, 32, torch.complex64)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda x: saved.append(x.numel() * x.element_size()) or x, lambda x: x):
            psi0, delta, u, e, r = args
            fused_readout.product_readout(psi0, delta, u, e, ro.qubit_rotations(r),
                                          ro.template.terms)
        sizes[t] = sum(saved)
    per_token = (sizes[192] - sizes[64]) / 128
    state = 2 * 32 * 2**5 * 8  # H·B·D complex64 amplitudes
    assert per_token < 0.5 * state


def test_kernels_keep_the_thread_count_torch_was_given():
    """numba starts its pool on the first kernel call and resets OpenMP's thread count as it does;
    the kernels put torch's count back, so a run asked for one thread stays at one."""
    script = textwrap.dedent("""
        import torch
        torch.set_num_threads(1)
        from qlam_qiskit.models import ModelConfig, QLAMClassifier
        model = QLAMClassifier(ModelConfig(d_model=8, heads=2, layers=1, max_len=4))
        model(torch.randn(2, 4, 1)).sum().backward()
        import numba
        print(torch.get_num_threads(), numba.get_num_threads())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["1", "1"]
