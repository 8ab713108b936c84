"""Per-token diagonal phases d = exp(i · ang @ P) as one autograd op.

A run of diagonal input gates multiplies basis state i by exp(i Σ_g ang_g P[g, i]). Forward builds
d as a Kronecker product of per-qubit factors when every gate acts on one qubit (n sin/cos per
token instead of 2^n); backward is one real matmul, grad_ang = Im(g · conj(d)) @ Pᵀ, instead of
autograd's chain of broadcast reductions.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def phases_ref(ang: Tensor, pattern: Tensor) -> Tensor:
    """Reference: ang (..., G), pattern (G, D) -> exp(i · ang @ pattern) (..., D) complex."""
    arg = ang @ pattern.to(ang.dtype)  # (..., D)
    return torch.polar(torch.ones_like(arg), arg)


def kron_phases(alpha: Tensor) -> Tensor:
    """Per-qubit phases α (..., n, 2) -> exp(i Σ_q α[q, bit_q(i)]) (..., 2^n), built as a
    Kronecker product (qubit 0 least significant): n sin/cos per token instead of 2^n."""
    f = torch.polar(torch.ones_like(alpha), alpha)  # (..., n, 2)
    d = f[..., -1, :]  # most significant qubit first
    for q in range(alpha.shape[-2] - 2, -1, -1):
        d = (d[..., :, None] * f[..., q, None, :]).flatten(-2)  # (..., 2^(n-q))
    return d


def _kron_phases(ang: Tensor, qubits: tuple[int, ...], local: Tensor, n: int) -> Tensor:
    """exp(i · phases) built qubit by qubit: gate g on qubit qubits[g] adds ang_g·local[g, bit]."""
    arg = ang.new_zeros(ang.shape[:-1] + (n, 2))  # (..., n, 2): phase of |0>, |1> per qubit
    for g, q in enumerate(qubits):
        arg[..., q, :] += ang[..., g, None] * local[g]
    return kron_phases(arg)


class _Phases(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ang: Tensor, pattern: Tensor, qubits, local, n: int) -> Tensor:
        if qubits is not None:
            d = _kron_phases(ang, qubits, local, n)
        else:
            d = phases_ref(ang, pattern)
        ctx.save_for_backward(d, pattern)
        return d

    @staticmethod
    def backward(ctx, g: Tensor):
        d, pattern = ctx.saved_tensors
        dphi = g.imag * d.real - g.real * d.imag  # Im(g · conj(d)): dL/d(phase), (..., D)
        return dphi @ pattern.to(dphi.dtype).T, None, None, None, None


def phases(ang: Tensor, pattern: Tensor, qubits: tuple[int, ...] | None = None,
           local: Tensor | None = None) -> Tensor:
    """ang (..., G), pattern (G, D) -> exp(i · ang @ pattern) (..., D).

    Pass ``qubits`` (one per gate) and ``local`` (G, 2), each gate's phase per unit angle on |0>
    and |1>, when every gate is single-qubit: forward then uses the Kronecker product.
    """
    n = pattern.shape[1].bit_length() - 1
    return _Phases.apply(ang, pattern, qubits, local, n)
