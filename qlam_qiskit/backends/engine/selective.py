"""Damped memories with per-token channels: damping rates set by each token, and RY inputs.

The damped scan (``transfer.py``) applies S = A(γ) · R(M) per token with γ fixed per memory. Here
the damping is the token's: per memory h, qubit q, sample b and token t a rate ρ_t (so
γ_t = 1 - exp(-ρ_t)), as a selective SSM (Mamba) makes its step depend on the token, so a token
decides how much a memory forgets:

    r_t = A(ρ_t) · R(M) · Rz(δ_t) · r_{t-1}

A(ρ) is amplitude damping of every qubit on the Pauli vector: for qubit q, the X_q and Y_q
components shrink by exp(-ρ/2) and Z_q -> exp(-ρ) Z_q + (1 - exp(-ρ)) I_q (the string with I at
q). Like Rz(δ_t) it costs O(n 4^n) per sample, so the scan stays one BLAS call (N, N) @ (N, B) per
token and memory. ``rz_damped_scan_ref`` is the recurrence in plain autograd, tested against the
kernel; with ρ_t constant the two equal ``transfer.rz_transfer_scan`` with S = A(ρ) R(M).
On a circuit the damping angle φ_t = 2 asin √γ_t of each reset ancilla is bound per token, as
the input angles are.

With ``ry`` angles (encoding "ry_rz": RY(a_t) then RZ(b_t) on every qubit) the input block is
Rz(b_t) Ry(a_t): RY turns the Z_q and X_q components into each other, so a token writes into
the populations a relaxed memory holds, not only into its coherences; the same O(n 4^n) cost.
"""

from __future__ import annotations

import numpy as np
import torch

from .kernels import match_threads
from .transfer import _rotate, rotation_pairs

try:
    from numba import njit, prange
    from .transfer import (_add_outer, _add_token_grad, _angle_grads, _copy_rows,
                           _previous, _rotate_rows)
except ImportError:  # pragma: no cover - numba is a dependency
    njit = None

Tensor = torch.Tensor
HALF = np.float32(0.5)
"""1/2 in the kernels: float32 keeps float32 loops in float32 (exact in float64 ones too)."""
COS, SIN, S, K, G, RY = range(6)
"""Channels of a token's packed inputs (``pack_channels``): cos δ, sin δ, e^{-ρ/2}, e^{-ρ},
1 - e^{-ρ}, then (with RY inputs) cos a at RY and sin a at RY + 1."""


def ry_pairs(n: int) -> np.ndarray:
    """(n, 4^(n-1), 2) int64: per qubit q, the index pairs (Z_q ..., X_q ...) that RY on q
    rotates ((z, x) -> (z cos a - x sin a, z sin a + x cos a), the Bloch rotation about y)."""
    idx = np.arange(4**n)
    digit = lambda q: (idx // 4**q) % 4  # noqa: E731 - Pauli letter of qubit q
    return np.stack([np.stack([idx[digit(q) == 3], idx[digit(q) == 3] - 2 * 4**q], -1)
                     for q in range(n)]).astype(np.int64)


def damping_pairs(n: int) -> np.ndarray:
    """(n, 4^(n-1), 2) int64: per qubit q, the index pairs (Z_q ..., I_q ...) that damping on q
    couples (the same string with Z, then I, at q)."""
    idx = np.arange(4**n)
    digit = lambda q: (idx // 4**q) % 4  # noqa: E731 - Pauli letter of qubit q
    return np.stack([np.stack([idx[digit(q) == 3], idx[digit(q) == 3] - 3 * 4**q], -1)
                     for q in range(n)]).astype(np.int64)


def _damp(r: Tensor, rate: Tensor, rot: Tensor, zp: Tensor) -> Tensor:
    """A(ρ) on Pauli vectors r (..., N) for rates (..., n): X, Y -> e^{-ρ/2}·, Z -> e^{-ρ} Z +
    (1 - e^{-ρ}) I, qubit by qubit (they commute)."""
    for q in range(rate.shape[-1]):
        rq = rate[..., q:q + 1]
        s, k, g = torch.exp(-rq / 2), torch.exp(-rq), -torch.expm1(-rq)
        xy = torch.cat([rot[q, :, 0], rot[q, :, 1]])
        iz, ii = zp[q, :, 0], zp[q, :, 1]
        z = k * r[..., iz] + g * r[..., ii]
        r = r.index_copy(-1, xy, s * r[..., xy]).index_copy(-1, iz, z)
    return r


def rz_damped_scan_ref(r0: Tensor, theta: Tensor, rate: Tensor, m: Tensor,
                       ry: Tensor | None = None) -> Tensor:
    """Reference: r0 (N,) or (B, H, N), RZ angles θ (T, B, H, n), rates ρ (T, B, H, n), mixing
    PTM R (H, N, N), optional RY angles (T, B, H, n) applied before the RZs -> states
    (T, B, H, N)."""
    n = theta.shape[-1]
    rot = torch.as_tensor(rotation_pairs(n), device=theta.device)
    zx = torch.as_tensor(ry_pairs(n), device=theta.device)
    zp = torch.as_tensor(damping_pairs(n), device=theta.device)
    r = r0.to(m.dtype).expand(theta.shape[1], theta.shape[2], r0.shape[-1])  # (B, H, N)
    ys = ry.unbind(0) if ry is not None else [None] * theta.shape[0]
    out = []
    for th, rt, y in zip(theta.unbind(0), rate.unbind(0), ys):  # (B, H, n) each
        if y is not None:
            r = _rotate(r, y, zx)
        r = torch.einsum("bhj,hij->bhi", _rotate(r, th, rot), m)  # (B, H, N)
        r = _damp(r, rt, rot, zp)
        out.append(r)
    return torch.stack(out)


if njit is not None:
    @njit(cache=True, inline="always")
    def _damp_rows(dst, s, k, g, rot, zp):  # pragma: no cover - compiled
        """dst = A(ρ) dst in place on every lane: dst (N, B); s, k, g = e^{-ρ/2}, e^{-ρ},
        1 - e^{-ρ} (n, B)."""
        for q in range(rot.shape[0]):
            sq, kq, gq = s[q], k[q], g[q]
            for i in range(rot.shape[1]):
                rx, ry = dst[rot[q, i, 0]], dst[rot[q, i, 1]]
                rz, ri = dst[zp[q, i, 0]], dst[zp[q, i, 1]]
                for b in range(dst.shape[1]):
                    rx[b] *= sq[b]
                    ry[b] *= sq[b]
                    rz[b] = kq[b] * rz[b] + gq[b] * ri[b]

    @njit(cache=True, inline="always")
    def _rotate_triples(dst, yc, ys, zc, zs, rot, zx):  # pragma: no cover - compiled
        """dst = Π_q Rz(b_q) Ry(a_q) dst in place, one pass over each qubit's (X, Y, Z) rows
        (the qubits' blocks commute): yc, ys = cos, sin of the RY angles, zc, zs of the RZ
        angles (n, B)."""
        for q in range(rot.shape[0]):
            ca, sa, cb, sb = yc[q], ys[q], zc[q], zs[q]
            for i in range(rot.shape[1]):
                rx, ry, rz = dst[rot[q, i, 0]], dst[rot[q, i, 1]], dst[zx[q, i, 0]]
                for b in range(dst.shape[1]):
                    x, y, z = rx[b], ry[b], rz[b]
                    x1 = sa[b] * z + ca[b] * x  # RY on (z, x)
                    rz[b] = ca[b] * z - sa[b] * x
                    rx[b] = cb[b] * x1 - sb[b] * y  # then RZ on (x, y)
                    ry[b] = sb[b] * x1 + cb[b] * y

    @njit(cache=True, inline="always")
    def _triples_back(ga, a, yc, ys, zc, zs, rot, zx, g_a, g_b):  # pragma: no cover - compiled
        """From the gradient ga at a = Π_q Rz(b_q) Ry(a_q) a_0 (both (N, B)): the angles'
        gradients g_a, g_b (n, B), and ga, a turned back to a_0's frame in place, qubit by qubit
        (the formulas hold in any frame where both carry the same other qubits' blocks)."""
        for q in range(rot.shape[0]):
            ca, sa, cb, sb = yc[q], ys[q], zc[q], zs[q]
            gaq, gbq = g_a[q], g_b[q]
            for b in range(ga.shape[1]):
                gaq[b] = 0.0
                gbq[b] = 0.0
            for i in range(rot.shape[1]):
                ix, iy, iz = rot[q, i, 0], rot[q, i, 1], zx[q, i, 0]
                vx, vy, vz, ax, ay, az = ga[ix], ga[iy], ga[iz], a[ix], a[iy], a[iz]
                for b in range(ga.shape[1]):
                    gbq[b] += vy[b] * ax[b] - vx[b] * ay[b]  # d/db (x, y) = (-y, x)
                    x1 = cb[b] * ax[b] + sb[b] * ay[b]  # Rz(-b): back to after the RY
                    y1 = cb[b] * ay[b] - sb[b] * ax[b]
                    gx1 = cb[b] * vx[b] + sb[b] * vy[b]
                    gy1 = cb[b] * vy[b] - sb[b] * vx[b]
                    gaq[b] += gx1 * az[b] - vz[b] * x1  # d/da (z, x) = (-x, z)
                    z0 = ca[b] * az[b] + sa[b] * x1  # Ry(-a) on (z, x)
                    gz0 = ca[b] * vz[b] + sa[b] * gx1
                    ax[b], ay[b], az[b] = ca[b] * x1 - sa[b] * az[b], y1, z0
                    vx[b], vy[b], vz[b] = ca[b] * gx1 - sa[b] * vz[b], gy1, gz0

    @njit(cache=True, inline="always")
    def _input_block(a, pt, rot, zx):  # pragma: no cover - compiled
        """a = Rz(δ_t) [Ry(a_t)] a in place from a token's packed channels pt (C, n, B): the RY
        stage when pt has the RY channels (C = 7), one pass per qubit (``_rotate_triples``)."""
        if pt.shape[0] > RY:
            _rotate_triples(a, pt[RY], pt[RY + 1], pt[COS], pt[SIN], rot, zx)
        else:
            _rotate_rows(a, pt[COS], pt[SIN], rot, False)

    @njit(cache=True)
    def _scan_memory(h, r0, p, m, rot, zx, zp, out):  # pragma: no cover - compiled
        """Memory h over the whole batch: r_t = A(ρ_t) R Rz(δ_t) [Ry(a_t)] r_{t-1};
        out[h, :, t] = r_t."""
        nn, b_ = r0.shape[0], p.shape[4]
        a = np.empty((nn, b_), r0.dtype)
        r = np.empty((nn, b_), r0.dtype)
        for j in range(nn):
            for b in range(b_):
                r[j, b] = r0[j]
        for t in range(p.shape[1]):
            pt = p[h, t]  # (C, n, B): this token's channels, one contiguous block
            _copy_rows(r, a)
            _input_block(a, pt, rot, zx)
            np.dot(m[h], a, r)  # (N, N) @ (N, B)
            _damp_rows(r, pt[S], pt[K], pt[G], rot, zp)
            for j in range(nn):
                oj, rj = out[h, j, t], r[j]
                for b in range(b_):
                    oj[b] = rj[b]

    @njit(parallel=True, cache=True)
    def _forward(r0, p, m, rot, zx, zp, out):  # pragma: no cover - compiled
        for h in prange(p.shape[0]):  # one task per memory
            _scan_memory(h, r0, p, m, rot, zx, zp, out)

    @njit(cache=True)
    def _scan_memory_back(h, r0, p, m, mt, rot, zx, zp, states, g_out, gp,
                          g_m):  # pragma: no cover - compiled
        """Memory h backwards. Per token: a = Rz(δ_t) [Ry(a_t)] r_{t-1} from the states, u = R a
        (one BLAS call), g_u = A(ρ_t)ᵀ g_t, and g_ρq = g_u · B_q u: d A / d ρ_q = A B_q, where
        B_q acts on qubit q's Pauli letter alone ((I, X, Y, Z) -> (0, -x/2, -y/2, i - z)) and
        commutes with A; then g_R += g_u aᵀ, g_a = Rᵀ g_u, and the input angles' gradients on the
        way back through the input block to g_{t-1}. gp[h, t] = (g_δ, g_ρ[, g_a]) (C', n, B)."""
        nn, b_, n = r0.shape[0], p.shape[4], rot.shape[0]
        gr = np.zeros((nn, b_), r0.dtype)
        ga = np.empty((nn, b_), r0.dtype)
        a = np.empty((nn, b_), r0.dtype)
        u = np.empty((nn, b_), r0.dtype)
        outer = np.empty((nn, nn), r0.dtype)
        acc = g_m[h]
        acc[:] = 0.0
        for t in range(p.shape[1] - 1, -1, -1):
            pt, gt = p[h, t], gp[h, t]  # (C, n, B), (C', n, B)
            _add_token_grad(gr, g_out, h, t)
            _previous(a, states, h, t, r0)
            _input_block(a, pt, rot, zx)
            np.dot(m[h], a, u)  # u = R a, the state before the damping
            for q in range(n):  # gr: gradient at r_t -> at u, through A(ρ_t)ᵀ
                sq, kq, gq = pt[S, q], pt[K, q], pt[G, q]
                for i in range(rot.shape[1]):
                    gx, gy = gr[rot[q, i, 0]], gr[rot[q, i, 1]]
                    gz, gi = gr[zp[q, i, 0]], gr[zp[q, i, 1]]
                    for b in range(b_):
                        gi[b] += gq[b] * gz[b]
                    for b in range(b_):
                        gz[b] *= kq[b]
                        gx[b] *= sq[b]
                        gy[b] *= sq[b]
            for q in range(n):  # g_ρq = g_u · B_q u (d A / d ρ_q = A B_q, B_q free of ρ)
                grq = gt[1, q]
                for b in range(b_):
                    grq[b] = 0.0
                for i in range(rot.shape[1]):
                    ix, iy, iz, ii = rot[q, i, 0], rot[q, i, 1], zp[q, i, 0], zp[q, i, 1]
                    gx, gy, gz = gr[ix], gr[iy], gr[iz]
                    ux, uy, uz, ui = u[ix], u[iy], u[iz], u[ii]
                    for b in range(b_):
                        grq[b] += gz[b] * (ui[b] - uz[b]) - (gx[b] * ux[b] + gy[b] * uy[b]) * HALF
            _add_outer(acc, gr, a, outer)  # g_R += g_u a_tᵀ
            np.dot(mt[h], gr, ga)  # gradient at a_t: Rᵀ g_u
            if pt.shape[0] > RY:  # the angles' gradients and ga back through the input block
                _triples_back(ga, a, pt[RY], pt[RY + 1], pt[COS], pt[SIN], rot, zx, gt[2], gt[0])
            else:
                _angle_grads(gt[0], ga, a, rot)
                _rotate_rows(ga, pt[COS], pt[SIN], rot, True)  # Rz(δ)ᵀ = Rz(-δ)
            gr, ga = ga, gr

    @njit(parallel=True, cache=True)
    def _backward(r0, p, m, mt, rot, zx, zp, states, g_out, gp, g_m):  # pragma: no cover
        for h in prange(p.shape[0]):
            _scan_memory_back(h, r0, p, m, mt, rot, zx, zp, states, g_out, gp, g_m)

    @njit(parallel=True, cache=True)
    def _lanes_last(v, p, c):  # pragma: no cover - compiled
        """p[h, t, c, j, b] = v[t, b, h, j]: channel c (T, B, H, n) into (H, T, C, n, B)."""
        for t in prange(v.shape[0]):
            for h in range(v.shape[2]):
                for j in range(v.shape[3]):
                    dst = p[h, t, c, j]
                    for b in range(v.shape[1]):
                        dst[b] = v[t, b, h, j]

    @njit(parallel=True, cache=True)
    def _lanes_back(gp, g):  # pragma: no cover - compiled
        """g[c, t, b, h, j] = gp[h, t, c, j, b]: (H, T, C, n, B) -> (C, T, B, H, n)."""
        for t in prange(gp.shape[1]):
            for c in range(gp.shape[2]):
                for h in range(gp.shape[0]):
                    for j in range(gp.shape[3]):
                        src = gp[h, t, c, j]
                        for b in range(gp.shape[4]):
                            g[c, t, b, h, j] = src[b]


def pack_channels(theta: Tensor, rate: Tensor, ry: Tensor | None, dtype: torch.dtype) -> Tensor:
    """The kernel's per-token inputs, (T, B, H, n) each, as one array (H, T, C, n, B): per
    memory and token one contiguous block of channels cos δ, sin δ, e^{-ρ/2}, e^{-ρ}, 1 - e^{-ρ}
    [, cos a, sin a] (e^{-ρ} as e^{-ρ/2} squared). Memory h's tokens follow each other in
    memory, so the scan's reads prefetch: as seven (T, H, n, B) arrays (a page apart per token)
    its forward was 3.4× slower (measured). The transcendentals run in torch, then a numba pass
    per channel moves the lanes last."""
    t, b, h, n = theta.shape
    dense = lambda v: v.detach().to(dtype).contiguous()  # noqa: E731 - torch's sin and cos
    th, neg = dense(theta), dense(rate).neg()  # are 20x slower on the angles' strided views
    s = torch.exp(neg * HALF)
    channels = [torch.cos(th), torch.sin(th), s, s * s, torch.expm1(neg).neg_()]  # (T, B, H, n)
    if ry is not None:
        yt = dense(ry)
        channels += [torch.cos(yt), torch.sin(yt)]
    p = torch.empty(h, t, len(channels), n, b, dtype=dtype)
    for c, v in enumerate(channels):
        _lanes_last(v.numpy(), p.numpy(), c)
    return p


class _RzDampedScan(torch.autograd.Function):
    """Lanes-last numba kernel, as ``transfer._RzTransferScan``: states kept as (H, N, T, B) and
    returned seen as (T, B, H, N), so the readout over all memories is one GEMM."""

    @staticmethod
    def forward(ctx, r0: Tensor, theta: Tensor, rate: Tensor, m: Tensor,
                ry: Tensor | None) -> Tensor:
        match_threads()
        dtype, n = m.dtype, theta.shape[-1]
        p = pack_channels(theta, rate, ry, dtype)  # (H, T, C, n, B)
        md, r0d = m.detach().contiguous(), r0.detach().to(dtype).contiguous()
        t, b, h, _ = theta.shape
        out = torch.empty(h, r0.shape[0], t, b, dtype=dtype)  # (H, N, T, B)
        _forward(r0d.numpy(), p.numpy(), md.numpy(), rotation_pairs(n), ry_pairs(n),
                 damping_pairs(n), out.numpy())
        ctx.save_for_backward(r0d, p, md, out)
        return out.permute(2, 3, 0, 1)  # (T, B, H, N), a view

    @staticmethod
    def backward(ctx, g_out: Tensor):
        r0, p, m, states = ctx.saved_tensors
        h, t, c, n, b = p.shape
        go = g_out.to(m.dtype).permute(2, 3, 0, 1).contiguous()  # (H, N, T, B)
        gp = torch.empty(h, t, 3 if c > RY else 2, n, b, dtype=m.dtype)  # g_δ, g_ρ[, g_a]
        g_m = torch.empty_like(m)
        _backward(r0.numpy(), p.numpy(), m.numpy(), m.transpose(1, 2).contiguous().numpy(),
                  rotation_pairs(n), ry_pairs(n), damping_pairs(n), states.numpy(), go.numpy(),
                  gp.numpy(), g_m.numpy())
        grads = torch.empty(gp.shape[2], t, b, h, n, dtype=m.dtype)  # (C', T, B, H, n)
        _lanes_back(gp.numpy(), grads.numpy())
        return None, grads[0], grads[1], g_m, grads[2] if c > RY else None


def rz_damped_scan(r0: Tensor, theta: Tensor, rate: Tensor, m: Tensor,
                   ry: Tensor | None = None) -> Tensor:
    """Fast path (CPU, numba): r0 (N,), RZ angles θ and rates ρ (T, B, H, n), R (H, N, N),
    optional RY angles (T, B, H, n) -> states (T, B, H, N). Falls back to the reference off the
    CPU or without numba."""
    if njit is None or theta.device.type != "cpu" or m.dtype not in (torch.float32, torch.float64):
        return rz_damped_scan_ref(r0, theta, rate, m, ry)
    return _RzDampedScan.apply(r0, theta, rate, m, ry)
