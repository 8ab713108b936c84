"""The QLAM recurrence ψ_t = (ψ_{t-1} ⊙ d_t) Uᵀ as one autograd op, and its plain reference.

``diag_unitary_scan`` runs the time loop outside autograd and writes its own backward pass, so a
token costs one elementwise product and one batched matmul forward, and a few small ops backward,
with no graph bookkeeping. ``diag_unitary_scan_ref`` is
the same recurrence in plain autograd, kept beside it and tested against it. Everything in the
backward loop works on one token's (H, B, D) slice, so it stays in cache.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def diag_unitary_scan_ref(psi0: Tensor, d: Tensor, mt: Tensor) -> Tensor:
    """Reference: ψ0 (H, B, D), phases d (T, H, B, D), Uᵀ (H, D, D) -> states (T, H, B, D)."""
    psi, states = psi0, []
    for dt in d.unbind(0):  # unbind once: indexing d[t] in the loop would make backward O(T^2)
        psi = torch.bmm(psi * dt, mt)  # (H, B, D)
        states.append(psi)
    return torch.stack(states)


class _DiagUnitaryScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, psi0: Tensor, d: Tensor, mt: Tensor) -> Tensor:
        dt = d.contiguous()  # (T, H, B, D) time-major: per-token slices are contiguous
        states = torch.empty_like(dt)  # (T, H, B, D)
        buf = torch.empty_like(psi0)  # ψ_{t-1} ⊙ d_t
        psi = psi0.contiguous()
        for t in range(dt.shape[0]):  # two kernels per token, no allocations
            torch.mul(psi, dt[t], out=buf)
            torch.bmm(buf, mt, out=states[t])  # (H, B, D)
            psi = states[t]
        ctx.save_for_backward(psi0, dt, mt, states)
        return states

    @staticmethod
    def backward(ctx, g_out: Tensor):
        psi0, dt, mt, states = ctx.saved_tensors
        go = g_out.contiguous()  # (T, H, B, D)
        mh = mt.mH.contiguous()  # (Uᵀ)^H
        g_psi = torch.zeros_like(psi0)  # dL/dψ_t, carried backwards through time
        g_d = torch.empty_like(dt)  # (T, H, B, D)
        g_m = torch.zeros_like(mt)  # (H, D, D)
        for t in range(dt.shape[0] - 1, -1, -1):
            prev = states[t - 1] if t > 0 else psi0  # ψ_{t-1} (H, B, D)
            g = g_psi + go[t]  # total grad at ψ_t
            g_m.baddbmm_((prev * dt[t]).mH, g)  # Σ_t a_tᴴ g_t with a_t = ψ_{t-1} ⊙ d_t
            g_a = torch.bmm(g, mh)  # grad at a_t
            torch.mul(g_a, prev.conj(), out=g_d[t])
            g_psi = g_a * dt[t].conj()
        return g_psi, g_d, g_m


def diag_unitary_scan(psi0: Tensor, d: Tensor, mt: Tensor) -> Tensor:
    """Fast path: ψ0 (H, B, D), phases d (T, H, B, D), Uᵀ (H, D, D) -> states (T, H, B, D)."""
    return _DiagUnitaryScan.apply(psi0, d, mt)
