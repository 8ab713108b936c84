"""The fused GPU kernel held to the plain-autograd references: values and every gradient, at small
sizes. Run in numba's CUDA simulator by the tests (CPU) and on a GPU by ``benchmarks/gpu_check.py``.

    NUMBA_ENABLE_CUDASIM=1 python -m qlam_qiskit.backends.engine.gpu.cases   # CPU, simulated
    python -m qlam_qiskit.backends.engine.gpu.cases --device cuda              # a GPU

Each case prints one line: its name, the worst error (relative to max(1, |reference|)) over the
output and the gradients, the tolerance (1e-10 complex128, 1e-5 complex64), PASS or FAIL.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit

from ....circuits.cell import CellConfig, CellTemplate, init_circuit, qlam_cell
from ....circuits.readout import readout_terms
from ..gates import apply_matrix
from ..engine import SequenceEngine
from ..product import ProductForm, product_form, product_scan_ref, product_step
from ..program import CircuitProgram
from . import fused_gpu_scan, gpu_product_readout, gpu_product_scan, simulating

Tensor = torch.Tensor
TOL = {"complex128": 1e-10, "complex64": 1e-5}


@dataclass(frozen=True)
class Case:
    """One comparison: a cell, sizes, a mode (states, last, read) and launch overrides."""

    name: str
    cell: str  # "qlam" (CellConfig below) or "gates" (a hand-written cell of many gate kinds)
    qubits: int = 3
    depth: int = 1
    entanglement: str = "ring"
    steps: int = 4
    heads: int = 2
    batch: int = 3
    mode: str = "last"
    dtype: str = "complex128"
    anchor_every: int = 0
    queries: int = 2
    launch: dict = field(default_factory=dict)
    """threads_per_sample, samples_per_block, states_in overrides."""


CASES = (
    Case("n1-last", "qlam", qubits=1, steps=3, heads=2, batch=2),
    Case("n2-depth2-states-ragged", "qlam", qubits=2, depth=2, steps=6, heads=3, batch=3,
         mode="states", launch={"samples_per_block": 2}),
    Case("n3-last-anchors-ragged", "qlam", qubits=3, steps=8, heads=2, batch=5, anchor_every=3,
         launch={"threads_per_sample": 2, "samples_per_block": 4}),
    Case("n3-states-c64", "qlam", qubits=3, steps=8, heads=2, batch=5, mode="states",
         dtype="complex64"),
    Case("n4-depth2-last-c64-global", "qlam", qubits=4, depth=2, steps=5, heads=2, batch=3,
         dtype="complex64", launch={"states_in": "global"}),
    Case("n4-full-states", "qlam", qubits=4, entanglement="full", steps=4, heads=1, batch=2,
         mode="states", launch={"threads_per_sample": 4}),
    Case("gates-depth2-last", "gates", steps=5, heads=2, batch=3),
    Case("read-n3-anchors", "qlam", qubits=3, steps=6, heads=2, batch=3, mode="read",
         anchor_every=2),
    Case("read-n2-c64-tps1", "qlam", qubits=2, steps=5, heads=1, batch=3, mode="read",
         dtype="complex64", queries=1, launch={"threads_per_sample": 1}),
    Case("read-n4-global-ragged", "qlam", qubits=4, steps=4, heads=2, batch=3, mode="read",
         launch={"states_in": "global", "samples_per_block": 2, "threads_per_sample": 2}),
)
"""Small enough for the simulator (about a second each there), every kernel path once: 1-4 qubits,
1-2 layers, states / last / read, anchors, ragged last blocks, 1 to 8 threads per sample, states
in shared and in global memory, complex128 and complex64."""
SIMULATE_CASES = ("n3-last-anchors-ragged", "n4-depth2-last-c64-global", "read-n3-anchors")
"""The subset ``gpu_check --simulate`` runs."""
GPU_CASES = ("n2-depth2-states-ragged", "n3-last-anchors-ragged", "n4-depth2-last-c64-global",
             "read-n3-anchors", "read-n2-c64-tps1")
"""The subset ``gpu_check`` runs on a GPU by default: every kernel path (states / last / read,
shared / global states, 1-8 threads per sample, both dtypes) in 5 compiles of ~10-25 s each."""


def gates_cell() -> CellTemplate:
    """A hand-written product-form cell: U, SX, P and CP gates, a global phase, two layers."""
    th, w = ParameterVector("x", 3), ParameterVector("w", 4)
    qc = QuantumCircuit(3, global_phase=0.3)
    qc.rz(th[0], 0)
    qc.p(2 * th[1] + 0.1, 1)
    qc.rz(th[2] - w[0], 2)
    qc.u(w[1], w[2], 0.4, 0)
    qc.sx(1)
    qc.cp(w[3], 0, 2)
    qc.cz(1, 2)
    qc.ry(w[0], 1)  # after a diagonal touched qubit 1: opens a second layer
    qc.rz(0.5, 2)
    return CellTemplate(CellConfig(qubits=3), qc, th, w)


def template(case: Case) -> CellTemplate:
    if case.cell == "gates":
        return gates_cell()
    return qlam_cell(CellConfig(qubits=case.qubits, depth=case.depth,
                                entanglement=case.entanglement))


def form_of(tpl: CellTemplate) -> ProductForm:
    form = product_form(CircuitProgram(tpl.circuit, list(tpl.inputs), list(tpl.weights)))
    assert form is not None, "the case's cell has no product form"
    return form


def readout_ref(psi0: Tensor, alpha: Tensor, u: Tensor, e: Tensor, ru: Tensor,
                z: Tensor) -> Tensor:
    """Plain autograd: ψ0 (H, B, D), α (B, T, H, n, 2), U, e, R (H, K, n, 2, 2), z (D, M) ->
    y (B, T, H, K, M), y = Σ_i |((⊗_q R_kq) ψ_t)_i|² z[i, c] after every token."""
    h, b, d = psi0.shape
    n = ru.shape[2]
    psi, ys = psi0, []
    for a in alpha.unbind(1):  # (B, H, n, 2)
        psi = product_step(psi, a.transpose(0, 1), u, e)  # (H, B, D)
        per_k = []
        for k in range(ru.shape[1]):
            amp = psi.reshape(h * b, d)
            for q in range(n):
                amp = apply_matrix(amp, ru[:, k, q].repeat_interleave(b, 0), (q,), n)
            per_k.append((amp.real ** 2 + amp.imag ** 2) @ z.to(amp.real.dtype))  # (H·B, M)
        ys.append(torch.stack(per_k, 1).view(h, b, ru.shape[1], -1))  # (H, B, K, M)
    return torch.stack(ys).permute(2, 0, 1, 3, 4)  # (B, T, H, K, M)


def signs(n: int, terms) -> Tensor:
    """Z-term sign table (D, M) for ``terms`` (tuples of qubits)."""
    idx = np.arange(2**n)
    bits = 1 - 2 * ((idx[:, None] >> np.arange(n)[None, :]) & 1)  # (D, n)
    return torch.as_tensor(np.stack([bits[:, list(t)].prod(axis=1) for t in terms], 1))


def _unitaries(shape: tuple, g: torch.Generator) -> Tensor:
    """Random 2×2 unitaries (shape..., 2, 2), complex128."""
    a = torch.randn(*shape, 2, 2, generator=g, dtype=torch.complex128)
    return torch.linalg.qr(a)[0]


def inputs(case: Case, seed: int = 0) -> tuple[list[Tensor], tuple[int, ...]]:
    """The kernel's arguments in complex128/float64 and which of them are differentiable.

    states/last: [ψ0, θ, A, o, qubits, phases, U, e], differentiable ψ0, θ, o, U, e;
    read: [ψ0, α, U, e, R, z], differentiable ψ0, α, U, e, R."""
    g = torch.Generator().manual_seed(seed)
    tpl = template(case)
    form = form_of(tpl)
    n, h, b, t = tpl.num_qubits, case.heads, case.batch, case.steps
    w = torch.randn(h, len(tpl.weights), generator=g, dtype=torch.float64)
    u, e = form.unitaries(w, torch.complex128)
    psi0 = torch.randn(h, b, 2**n, generator=g, dtype=torch.complex128)
    psi0 = psi0 / psi0.norm(dim=-1, keepdim=True)
    if case.mode == "read":
        alpha = torch.rand(b, t, h, n, 2, generator=g, dtype=torch.float64) * 6.3
        ru = _unitaries((h, case.queries, n), g)
        pairs = tpl.entangling_pairs if case.cell == "qlam" else ()
        z = signs(n, readout_terms(n, "pairs", pairs)).to(torch.float64)
        return [psi0, alpha, u, e, ru, z], (0, 1, 2, 3, 4)
    theta = torch.rand(t, h, b, len(tpl.inputs), generator=g, dtype=torch.float64) * 6.3
    a_in, off, qubits, local = form.inputs(w)
    return [psi0, theta, a_in, off, qubits, local, u, e], (0, 1, 3, 6, 7)


def _cast(args: list[Tensor], dtype: torch.dtype, device: torch.device) -> list[Tensor]:
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    return [a.to(device) if a.dtype == torch.int64 else
            a.to(device=device, dtype=dtype if a.is_complex() else real) for a in args]


def _value_and_grads(fn, args: list[Tensor], diff: tuple[int, ...], **kw) -> list[Tensor]:
    args = [a.detach().requires_grad_(i in diff) for i, a in enumerate(args)]
    out = fn(*args, **kw)
    g = torch.Generator().manual_seed(7)
    wr = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.device, out.real.dtype)
    if out.is_complex():
        loss = (out.real * wr).sum() + (out.abs() ** 2 * wr).sum()
    else:
        loss = (out * wr).sum()
    grads = torch.autograd.grad(loss, [args[i] for i in diff])
    return [out.detach()] + list(grads)


def run_case(case: Case, device: torch.device) -> dict:
    """The kernel on ``device`` in the case's dtype vs the reference in complex128 on CPU:
    {"name", "error", "tol", "ok", "seconds"}."""
    args, diff = inputs(case)
    want_kw = {} if case.mode == "read" else {"all_states": case.mode == "states"}
    want = _value_and_grads(readout_ref if case.mode == "read" else product_scan_ref, args, diff,
                            **want_kw)
    kw = dict(case.launch, anchor_every=case.anchor_every)
    if case.mode != "read":
        kw["all_states"] = case.mode == "states"
    fn = gpu_product_readout if case.mode == "read" else gpu_product_scan
    start = time.perf_counter()
    got = _value_and_grads(fn, _cast(args, getattr(torch, case.dtype), device), diff, **kw)
    seconds = time.perf_counter() - start
    err = max(((a.cpu().to(b.dtype) - b).abs().max() / max(1.0, b.abs().max().item())).item()
              for a, b in zip(got, want))
    tol = TOL[case.dtype]
    return {"name": case.name, "error": err, "tol": tol, "ok": bool(err < tol),
            "seconds": seconds}


def check_saved_memory(device: torch.device) -> dict:
    """Last-state and readout runs save nothing per token of state size: what autograd keeps grows
    with T by less than one state per token (only α-sized inputs and cos/sin grow)."""
    case = Case("memory", "qlam", qubits=6, heads=1, batch=2, dtype="complex64")
    state = case.heads * case.batch * 2**case.qubits * 8  # bytes of one token's states
    growth = {}
    for mode in ("last", "read"):
        sizes = []
        for t in (4, 12):
            c = Case("memory", "qlam", qubits=6, steps=t, heads=1, batch=2, mode=mode,
                     dtype="complex64", queries=1)
            args, diff = inputs(c)
            args = [a.requires_grad_(i in diff) for i, a in enumerate(
                _cast(args, torch.complex64, device))]
            saved = []
            with torch.autograd.graph.saved_tensors_hooks(
                    lambda x: saved.append(x.numel() * x.element_size()) or x, lambda x: x):
                if mode == "read":
                    gpu_product_readout(*args, anchor_every=0)
                else:
                    gpu_product_scan(*args, all_states=False)
            sizes.append(sum(saved))
        growth[mode] = (sizes[1] - sizes[0]) / 8  # bytes per extra token
    err = max(growth.values()) / state
    return {"name": "saved-memory-per-token", "error": err, "tol": 0.5, "ok": err < 0.5,
            "seconds": 0.0, "detail": growth}


def check_engine_glue(device: torch.device) -> dict:
    """``fused_gpu_scan`` (the KERNELS row's scan) on a SequenceEngine equals its product kernel."""
    tpl = qlam_cell(CellConfig(qubits=3))
    eng = SequenceEngine(tpl, init_circuit(3), dtype="complex128", kernel="product")
    g = torch.Generator().manual_seed(3)
    theta = torch.rand(4, 2, 3, 3, generator=g, dtype=torch.float64)
    w = torch.randn(2, len(tpl.weights), generator=g, dtype=torch.float64)
    want = eng.run(theta, w)
    psi = eng.initial_state(2, 3, device)
    got = fused_gpu_scan(eng, psi, theta.to(device), w.to(device), True)
    err = (got.cpu() - want).abs().max().item()
    return {"name": "engine-glue", "error": err, "tol": 1e-10, "ok": err < 1e-10, "seconds": 0.0}


def run_all(device: torch.device | str, names=None, *, extra: bool = True,
            echo: bool = True) -> list[dict]:
    """Every case (or those ``names``) and, with ``extra``, the memory and engine checks."""
    device = torch.device(device)
    if simulating():
        sys.setswitchinterval(5e-5)  # simulated threads hand the GIL over often: ~5x faster
    rows = []
    checks = [lambda c=c: run_case(c, device) for c in CASES if names is None or c.name in names]
    if extra:
        checks += [lambda: check_saved_memory(device), lambda: check_engine_glue(device)]
    for check in checks:
        row = check()
        rows.append(row)
        if echo:
            print(f"{'PASS' if row['ok'] else 'FAIL'} {row['name']}: error {row['error']:.1e} "
                  f"(tol {row['tol']:.0e}, {row['seconds']:.1f} s)", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cpu (simulator) or cuda; default: cpu when "
                    "NUMBA_ENABLE_CUDASIM=1, else cuda")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    ap.add_argument("--only", default=None, help="comma-separated case names")
    args = ap.parse_args(argv)
    device = args.device or ("cpu" if simulating() else "cuda")
    rows = run_all(device, args.only.split(",") if args.only else None,
                   extra=args.only is None)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
