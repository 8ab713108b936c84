"""Plain-torch reference of a whole ``QLAMLayer``: the recurrence readable in one place.

In the style of mamba's ``selective_scan_ref``: no fused scans, no phase tricks, no adjoint walks,
just the cell's gates applied one at a time, token after token, then each learned basis's gates
and the Z-term signs. ``QLAMLayer.forward`` (every kernel) and Qiskit are tested against it.
"""

from __future__ import annotations

import torch

from ..backends.engine.compile import Gate, compile_gates
from ..backends.engine.gates import apply_matrix, gate_matrix
from .qlam import QLAMLayer

Tensor = torch.Tensor


def _angles(g: Gate, th: Tensor | None, w: Tensor, n: int) -> Tensor:
    """Angles A_in θ + A_w w + c of gate g for th (H, N, m) or None and w (H, P): (H, N, A)."""
    ang = w @ torch.as_tensor(g.a_w, dtype=w.dtype, device=w.device).T  # (H, A)
    ang = (ang + torch.as_tensor(g.c, dtype=w.dtype, device=w.device))[:, None, :]  # (H, 1, A)
    if th is not None:
        ang = ang + th @ torch.as_tensor(g.a_in, dtype=th.dtype, device=th.device).T  # (H, N, A)
    return ang.expand(w.shape[0], n, -1)  # (H, N, A)


def _apply(psi: Tensor, g: Gate, ang: Tensor) -> Tensor:
    """Gate g at angles ang (H, N, A) on states ψ (H, N, D): (H, N, D)."""
    h, n, d = psi.shape
    mat = gate_matrix(g.name, tuple(ang.reshape(h * n, -1).unbind(-1)), dtype=psi.dtype,
                      device=psi.device)  # (H·N, 2^k, 2^k), or (2^k, 2^k) without angles
    return apply_matrix(psi.reshape(h * n, d), mat, g.qubits, d.bit_length() - 1).view(h, n, d)


def qlam_readouts_ref(layer: QLAMLayer, x: Tensor) -> Tensor:
    """x (B, T, d_in) -> readouts y (B, T, H, K, M), or (B, H, K, M) with readout='last'.

    θ_t = Δ_h (W x_t + b);  |ψ_t> = M(Δ_h w) E(θ_t) |ψ_{t-1}>, |ψ_0> = |+>^n;
    y_t,k,S = <ψ_t| U_k† Z_S U_k |ψ_t>, per head h (weights w_h, bases U_k(r_h)).
    """
    cell, ro, cdt = layer.cell_template, layer.readout_template, layer.engine.dtype
    real = torch.float64 if cdt == torch.complex128 else torch.float32
    (b, t, _), h, n, dev = x.shape, layer.heads, cell.circuit.num_qubits, x.device
    gates = compile_gates(cell.circuit, list(cell.inputs), list(cell.weights))  # E(θ), M(w)
    queries = [compile_gates(qc, (), list(ro.weights)) for qc in ro.circuits]  # U_k(r)
    bits = (torch.arange(2**n, device=dev)[:, None] >> torch.arange(n, device=dev)) & 1  # (D, n)
    z = torch.stack([(1 - 2 * bits[:, list(s)]).prod(-1) for s in ro.terms], -1).to(real)  # (D, M)
    theta = layer.input_angles(x).to(real)  # (B, T, H, m): θ_t = Δ_h (W x_t + b)
    w, r = layer.mixing().to(real), layer.basis.to(real)  # (H, P): Δ_h w_h, (H, 3nK)
    psi = torch.full((h, b, 2**n), 2 ** (-n / 2), dtype=cdt, device=dev)  # (H, B, D): |+>^n
    ys = []
    for k in range(t):
        th = theta[:, k].transpose(0, 1)  # (H, B, m)
        for g in gates:  # one gate at a time: ψ <- G ψ
            psi = _apply(psi, g, _angles(g, th if g.uses_input else None, w, b))  # (H, B, D)
        if layer.readout == "all" or k == t - 1:
            y = []
            for query in queries:
                amp = psi  # (H, B, D)
                for g in query:
                    amp = _apply(amp, g, _angles(g, None, r, b))  # (H, B, D): U_k ψ_t
                y.append((amp.real ** 2 + amp.imag ** 2) @ z)  # (H, B, M): Σ_i |a_i|² (±1)_S
            ys.append(torch.stack(y, -2).transpose(0, 1))  # (B, H, K, M)
    return torch.stack(ys, 1) if layer.readout == "all" else ys[-1]  # (B, T, H, K, M)|(B, H, K, M)


def qlam_layer_ref(layer: QLAMLayer, x: Tensor) -> Tensor:
    """x (B, T, d_in) -> ``layer.forward(x)`` recomputed: (B, T, d_out), or (B, d_out) for
    readout='last'. out_t = V y_t + c over all heads' readouts y_t (``qlam_readouts_ref``)."""
    y = qlam_readouts_ref(layer, x)  # (B, T, H, K, M) or (B, H, K, M)
    out = layer.out(y.flatten(-3).to(layer.out.weight.dtype))  # (B, T, d_out) or (B, d_out)
    if layer.gate is not None:  # out_t σ(G x_t + g)
        out = out * torch.sigmoid(layer.gate(x if layer.readout == "all" else x[:, -1]))
    return out
