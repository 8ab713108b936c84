"""Unitary-adjoint backpropagation: the QLAM recurrence with memory independent of T.

ψ_t = (ψ_{t-1} ⊙ d_t) M with d_t = exp(i · ang_t @ P) and M = Uᵀ unitary. Forward keeps only the
last state; backward walks back in time recomputing ψ_{t-1} = (ψ_t Mᴴ) ⊙ conj(d_t) instead of
reading it from storage, and rebuilds each d_t from its few angles. Peak memory is a handful of
(H, B, D) states plus the angles (T, H, B, G) with G ≈ n, not T states of 2^n amplitudes.
Round-off makes the recomputed states drift from the forward ones over long sequences; with
``anchor_every=k`` every k-th forward state is kept and the backward walk restarts from it.
``adjoint_scan_ref`` is the same function in plain autograd, kept beside it and tested against it.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _phases(ang_t: Tensor, pattern: Tensor, dtype: torch.dtype) -> Tensor:
    """ang_t (H, B, G), pattern (G, D) -> exp(i · ang_t @ pattern) (H, B, D) complex."""
    arg = ang_t @ pattern  # (H, B, D)
    return torch.polar(torch.ones_like(arg), arg).to(dtype)


def adjoint_scan_ref(psi0: Tensor, ang: Tensor, pattern: Tensor, mt: Tensor) -> Tensor:
    """Reference: ψ0 (H, B, D), angles (T, H, B, G), pattern (G, D), M (H, D, D) -> ψ_T (H, B, D)."""
    psi = psi0
    for a_t in ang.unbind(0):
        psi = torch.bmm(psi * _phases(a_t, pattern.to(a_t.dtype), psi0.dtype), mt)
    return psi


class _AdjointScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, psi0: Tensor, ang: Tensor, pattern: Tensor, mt: Tensor,
                anchor_every: int) -> Tensor:
        pattern = pattern.to(ang.dtype)
        psi, anchors = psi0, []
        for t in range(ang.shape[0]):
            psi = torch.bmm(psi * _phases(ang[t], pattern, psi0.dtype), mt)  # (H, B, D)
            if anchor_every and (t + 1) % anchor_every == 0 and t + 1 < ang.shape[0]:
                anchors.append(psi)
        ctx.anchor_every = anchor_every
        ctx.save_for_backward(psi0, ang, pattern, mt, psi, *anchors)
        return psi

    @staticmethod
    def backward(ctx, g_last: Tensor):
        psi0, ang, pattern, mt, psi, *anchors = ctx.saved_tensors
        k = ctx.anchor_every
        mh = mt.mH.contiguous()  # M⁻¹ = Mᴴ
        pt = pattern.T.contiguous()  # (D, G)
        g = g_last.contiguous()  # dL/dψ_t, carried backwards
        g_ang = torch.empty_like(ang)  # (T, H, B, G)
        g_m = torch.zeros_like(mt)  # (H, D, D)
        for t in range(ang.shape[0] - 1, -1, -1):
            d_t = _phases(ang[t], pattern, psi0.dtype)  # (H, B, D)
            if t == 0:
                prev = psi0
            elif k and t % k == 0:
                prev = anchors[t // k - 1]  # stored ψ_{t-1}: the walk restarts exactly
            else:
                prev = torch.bmm(psi, mh) * d_t.conj()  # recomputed ψ_{t-1}
            a = prev * d_t  # ψ_{t-1} ⊙ d_t
            g_m.baddbmm_(a.mH, g)  # Σ_t a_tᴴ g_t
            g_a = torch.bmm(g, mh)  # dL/da_t
            ga_conj = g_a * a.conj()  # g_d · conj(d) = g_a · conj(a)
            g_ang[t] = ga_conj.imag @ pt  # Im(g_d conj(d)) @ Pᵀ: (H, B, G)
            g = g_a * d_t.conj()
            psi = prev
        return g, g_ang, None, g_m, None


def adjoint_scan(psi0: Tensor, ang: Tensor, pattern: Tensor, mt: Tensor, *,
                 anchor_every: int = 0) -> Tensor:
    """Last state ψ_T (H, B, D) of ψ_t = (ψ_{t-1} ⊙ exp(i·ang_t@P)) M, backward in O(1) states.

    ψ0 (H, B, D) complex, ang (T, H, B, G) real, pattern (G, D) real, M (H, D, D) unitary;
    ``anchor_every`` k > 0 keeps every k-th state to bound round-off drift (T/k states).
    """
    return _AdjointScan.apply(psi0, ang, pattern, mt, anchor_every)
