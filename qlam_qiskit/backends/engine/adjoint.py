"""Unitary-adjoint backpropagation: the QLAM recurrence with memory independent of T.

ψ_t = (ψ_{t-1} ⊙ d_t) M with d_t = exp(i · ang_t @ P), ang_t = θ_t @ Aᵀ + o and M = Uᵀ unitary.
Forward keeps only the last state; backward walks back in time recomputing
ψ_{t-1} = (ψ_t Mᴴ) ⊙ conj(d_t) instead of reading it from storage, and rebuilds each chunk's d_t
from the inputs θ. Beyond the inputs and their gradient (T, H, B, m), peak memory is a fixed number
of (H, B, D) states and chunk buffers, not T states of 2^n amplitudes.
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


def adjoint_scan_ref(psi0: Tensor, theta: Tensor, a_in: Tensor, off: Tensor, pattern: Tensor,
                     mt: Tensor) -> Tensor:
    """Reference: ψ0 (H, B, D), θ (T, H, B, m), A (G, m), o (H, G), pattern (G, D),
    M (H, D, D) -> ψ_T (H, B, D)."""
    psi = psi0
    for th in theta.unbind(0):
        ang = th @ a_in.T + off[:, None, :]  # (H, B, G)
        psi = torch.bmm(psi * _phases(ang, pattern.to(ang.dtype), psi0.dtype), mt)
    return psi


def _chunk_angles(theta: Tensor, a_in: Tensor, off: Tensor) -> Tensor:
    """θ (C, H, B, m) -> angles (C, H, B, G)."""
    return theta @ a_in.T + off[:, None, :]


CHUNK = 32
"""Tokens whose phases are built, and whose dL/dM terms are summed, in one batch of kernels."""


class _AdjointScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, psi0: Tensor, theta: Tensor, a_in: Tensor, off: Tensor, pattern: Tensor,
                mt: Tensor, anchor_every: int) -> Tensor:
        pattern = pattern.to(theta.dtype)
        t_len = theta.shape[0]
        anchors = []
        psi, buf = psi0.clone(memory_format=torch.contiguous_format), torch.empty_like(psi0)
        for c0 in range(0, t_len, CHUNK):
            d = _phases(_chunk_angles(theta[c0:c0 + CHUNK], a_in, off), pattern,
                        psi0.dtype)  # (C, H, B, D)
            for i in range(d.shape[0]):  # two kernels per token, no allocations
                torch.mul(psi, d[i], out=buf)
                torch.bmm(buf, mt, out=psi)  # (H, B, D)
                t = c0 + i
                if anchor_every and (t + 1) % anchor_every == 0 and t + 1 < t_len:
                    anchors.append(psi.clone())
        ctx.anchor_every = anchor_every
        ctx.save_for_backward(psi0, theta, a_in, off, pattern, mt, psi, *anchors)
        return psi

    @staticmethod
    def backward(ctx, g_last: Tensor):
        psi0, theta, a_in, off, pattern, mt, psi, *anchors = ctx.saved_tensors
        k = ctx.anchor_every
        t_len, h, b, _ = theta.shape
        dim = psi.shape[-1]
        mh = mt.mH.contiguous()  # M⁻¹ = Mᴴ
        pt = pattern.T.contiguous()  # (D, G)
        # x_t = [ψ_t ; g_t] stacked on the batch axis: one GEMM per token walks both back,
        # y_t = x_t Mᴴ = [a_t ; dL/da_t] with a_t = ψ_{t-1} ⊙ d_t, then x_{t-1} = y_t ⊙ conj(d_t).
        xs = torch.empty(CHUNK + 1, h, 2, b, dim, dtype=psi.dtype, device=psi.device)
        ys = torch.empty(CHUNK, h, 2, b, dim, dtype=psi.dtype, device=psi.device)
        g_theta = torch.empty_like(theta)  # (T, H, B, m)
        g_off = torch.zeros_like(off)  # (H, G)
        g_m = torch.zeros_like(mt)  # (H, D, D)
        xs[-1, :, 0], xs[-1, :, 1] = psi, g_last
        for c1 in range(t_len, 0, -CHUNK):
            c0 = max(0, c1 - CHUNK)
            n = c1 - c0
            dc = _phases(_chunk_angles(theta[c0:c1], a_in, off), pattern,
                         psi.dtype).conj_physical()  # (n, H, B, D)
            x, y = xs[CHUNK + 1 - n - 1:], ys[CHUNK - n:]  # (n+1, ...), (n, ...)
            for i in range(n - 1, -1, -1):  # two kernels per token
                t = c0 + i
                torch.bmm(x[i + 1].view(h, 2 * b, dim), mh, out=y[i].view(h, 2 * b, dim))
                torch.mul(y[i], dc[i, :, None], out=x[i])  # [ψ_{t-1} ; g_{t-1}]
                if t == 0:
                    x[i, :, 0] = psi0  # exact start (the walk's own ψ_{-1} is round-off)
                elif k and t % k == 0:
                    x[i, :, 0] = anchors[t // k - 1]  # stored ψ_{t-1}: restart exactly
            a, g_a, g = y[:, :, 0], y[:, :, 1], x[1:, :, 1]  # (n, H, B, D) each
            # Σ a_tᴴ g_t over the chunk as one GEMM: (H, D, n·B) @ (H, n·B, D)
            g_m += torch.bmm(a.permute(1, 3, 0, 2).reshape(h, dim, n * b).conj(),
                             g.transpose(0, 1).reshape(h, n * b, dim))
            g_ang = (g_a * a.conj()).imag @ pt  # Im(dL/dd · conj d) @ Pᵀ: (n, H, B, G)
            g_theta[c0:c1] = g_ang @ a_in
            g_off += g_ang.sum(dim=(0, 2))
            xs[-1] = x[0]  # carry [ψ_{c0-1} ; g_{c0-1}] into the next chunk
        return xs[-1, :, 1].clone(), g_theta, None, g_off, None, g_m, None


def adjoint_scan(psi0: Tensor, theta: Tensor, a_in: Tensor, off: Tensor, pattern: Tensor,
                 mt: Tensor, *, anchor_every: int = 0) -> Tensor:
    """Last state ψ_T (H, B, D) of ψ_t = (ψ_{t-1} ⊙ exp(i·(θ_t Aᵀ + o) P)) M, backward in O(1) states.

    ψ0 (H, B, D) complex, θ (T, H, B, m) real, A (G, m) constant, o (H, G) real (differentiable:
    the weight-dependent part of the angles), pattern (G, D) real, M (H, D, D) unitary;
    ``anchor_every`` k > 0 keeps every k-th state to bound round-off drift (T/k states).
    """
    return _AdjointScan.apply(psi0, theta, a_in.to(theta.dtype), off, pattern, mt, anchor_every)
