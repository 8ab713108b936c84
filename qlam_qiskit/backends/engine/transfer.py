"""Open-system memories in the Pauli-transfer form: a density matrix as its real Pauli vector.

A memory ρ of n qubits is carried as r_P = Tr(P ρ) over the 4^n Pauli strings P (index Σ_q p_q 4^q,
p = I, X, Y, Z = 0..3, qubit 0 least significant as in Qiskit). Every channel is then a real
4^n × 4^n matrix (its Pauli transfer matrix, PTM) and every readout Tr(O ρ) a real dot product. A
token's update is

    r_t = S · Rz(δ_t) · r_{t-1}        S = A(γ) · R(M)   (fixed per memory, input-independent)

with Rz(δ_t) the input block (RZ(δ_q) on every qubit: the X/Y components of qubit q rotate by δ_q),
R(M) the mixing unitary's PTM and A(γ) amplitude damping of every qubit. Because only the rotation
depends on the token, the scan is one small real mat-vec per token: ``rz_transfer_scan`` runs it as
a numba kernel (the token loop inside, one task per memory and sample, states kept for backward);
``rz_transfer_scan_ref`` is the same recurrence in plain autograd, tested against it. Layouts are
time-major, memories minor, (T, B, H, ·): a readout over all memories is then one GEMM over the
T·B rows, with no transpose of the states.
"""

from __future__ import annotations

import numpy as np
import torch

from .kernels import match_threads

try:
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a dependency
    njit = None

Tensor = torch.Tensor
_PAULI = np.array([[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]])


def pauli_matrices(n: int, dtype: torch.dtype = torch.complex128) -> Tensor:
    """All 4^n Pauli strings as matrices (4^n, D, D), index Σ_q p_q 4^q (qubit 0 lowest)."""
    mats = np.ones((1, 1, 1), dtype=complex)
    for _ in range(n):  # kron(P_q, lower qubits): qubit q is the next most significant digit
        d = mats.shape[1]
        mats = np.einsum("pab,qcd->pqacbd", _PAULI, mats).reshape(-1, 2 * d, 2 * d)
    return torch.as_tensor(mats, dtype=dtype)


def rotation_pairs(n: int) -> np.ndarray:
    """(n, 4^(n-1), 2) int64: per qubit q, the index pairs (X_q ..., Y_q ...) that RZ on q rotates."""
    idx = np.arange(4**n)
    digit = lambda q: (idx // 4**q) % 4  # noqa: E731 - Pauli letter of qubit q
    return np.stack([np.stack([idx[digit(q) == 1], idx[digit(q) == 1] + 4**q], -1)
                     for q in range(n)]).astype(np.int64)


def plus_state(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """|+>^n as a Pauli vector (4^n,): 1 on strings of I and X only."""
    idx = np.arange(4**n)
    ok = np.all([((idx // 4**q) % 4) <= 1 for q in range(n)], axis=0)
    return torch.as_tensor(ok, dtype=dtype)


def unitary_transfer(u: Tensor, paulis: Tensor) -> Tensor:
    """PTM of unitaries u (H, D, D): R[h, P, Q] = Tr(P U Q U†) / D, real (H, 4^n, 4^n)."""
    d = u.shape[-1]
    conj = torch.einsum("hab,qbc,hdc->hqad", u, paulis.to(u.dtype), u.conj())  # U Q U† (H, N, D, D)
    return torch.einsum("pab,hqba->hpq", paulis.to(u.dtype), conj).real / d


def damping_transfer(rate: Tensor) -> Tensor:
    """PTM of amplitude damping on every qubit, γ = 1 - exp(-rate) for rates (H, n): (H, 4^n, 4^n).

    On one qubit (I, X, Y, Z): x, y shrink by √(1-γ) = exp(-rate/2), z -> (1-γ) z + γ (relaxing
    towards |0⟩). Written in the rate so that strong damping (γ -> 1) keeps finite gradients
    (√(1-γ) has none at γ = 1)."""
    h, n = rate.shape
    out = torch.ones(h, 1, 1, dtype=rate.dtype, device=rate.device)
    for q in range(n):  # kron(A_q, out): qubit q becomes the most significant digit so far
        r = rate[:, q]
        g, s, keep = -torch.expm1(-r), torch.exp(-r / 2), torch.exp(-r)
        z, o = torch.zeros_like(r), torch.ones_like(r)
        a = torch.stack([torch.stack([o, z, z, z], -1), torch.stack([z, s, z, z], -1),
                         torch.stack([z, z, s, z], -1), torch.stack([g, z, z, keep], -1)], -2)
        out = torch.einsum("hij,hkl->hikjl", a, out).reshape(h, 4 * out.shape[1], 4 * out.shape[2])
    return out


def observable_vectors(obs: Tensor, paulis: Tensor) -> Tensor:
    """Observables O (..., D, D) as Pauli vectors o (..., 4^n) with Tr(O ρ) = o · r."""
    d = obs.shape[-1]
    return torch.einsum("...ab,pba->...p", obs, paulis.to(obs.dtype)).real / d


def _rotate(r: Tensor, theta: Tensor, pairs: Tensor) -> Tensor:
    """Rz(δ) on Pauli vectors r (..., N) for angles theta (..., n): (x, y) -> (cx - sy, sx + cy)."""
    for q in range(theta.shape[-1]):
        ix, iy = pairs[q, :, 0], pairs[q, :, 1]
        c, s = torch.cos(theta[..., q:q + 1]), torch.sin(theta[..., q:q + 1])
        x, y = r[..., ix], r[..., iy]
        r = r.index_copy(-1, ix, c * x - s * y).index_copy(-1, iy, s * x + c * y)
    return r


def rz_transfer_scan_ref(r0: Tensor, theta: Tensor, s: Tensor) -> Tensor:
    """Reference: r0 (N,) or (B, H, N), angles θ (T, B, H, n), transfer S (H, N, N) -> states
    (T, B, H, N)."""
    n = theta.shape[-1]
    pairs = torch.as_tensor(rotation_pairs(n), device=theta.device)
    r = r0.to(s.dtype).expand(theta.shape[1], theta.shape[2], r0.shape[-1])  # (B, H, N)
    out = []
    for th in theta.unbind(0):  # (B, H, n)
        r = torch.einsum("bhj,hij->bhi", _rotate(r, th, pairs), s)  # (B, H, N)
        out.append(r)
    return torch.stack(out)


LANES = 16
"""Samples one kernel task runs side by side: every inner loop runs over them (SIMD); a ragged
batch pads the last task with lanes of zero angles whose results are dropped."""

if njit is not None:
    @njit(cache=True, inline="always")
    def _angles(theta, t, b0, nl, h, c, sn):  # pragma: no cover - compiled
        for q in range(c.shape[0]):
            for lane in range(LANES):
                th = theta[t, b0 + lane, h, q] if lane < nl else 0.0
                c[q, lane], sn[q, lane] = np.cos(th), np.sin(th)

    @njit(cache=True, inline="always")
    def _rot(r, c, s, pairs, sign):  # pragma: no cover - compiled
        for q in range(pairs.shape[0]):
            for k in range(pairs.shape[1]):
                ix, iy = pairs[q, k, 0], pairs[q, k, 1]
                for lane in range(LANES):
                    x, y = r[ix, lane], r[iy, lane]
                    r[ix, lane] = c[q, lane] * x - sign * s[q, lane] * y
                    r[iy, lane] = sign * s[q, lane] * x + c[q, lane] * y

    @njit(cache=True, inline="always")
    def _matvec(m, h, x, y, transpose):  # pragma: no cover - compiled
        """y = M[h] x (or M[h]ᵀ x) on every lane: x, y (N, LANES)."""
        nn = x.shape[0]
        y[:] = 0.0
        for i in range(nn):
            for j in range(nn):
                w = m[h, j, i] if transpose else m[h, i, j]
                for lane in range(LANES):
                    y[i, lane] += w * x[j, lane]

    @njit(parallel=True, cache=True)
    def _forward(r0, theta, s, pairs, out):  # pragma: no cover - compiled
        t_, b_, h_, n = theta.shape
        nn, chunks = r0.shape[0], (b_ + LANES - 1) // LANES
        for task in prange(h_ * chunks):
            h, b0 = task // chunks, (task % chunks) * LANES
            nl = min(LANES, b_ - b0)
            r, nxt = np.empty((nn, LANES), r0.dtype), np.empty((nn, LANES), r0.dtype)
            for j in range(nn):
                r[j, :] = r0[j]
            c, sn = np.empty((n, LANES), r0.dtype), np.empty((n, LANES), r0.dtype)
            for t in range(t_):
                _angles(theta, t, b0, nl, h, c, sn)
                _rot(r, c, sn, pairs, 1.0)
                _matvec(s, h, r, nxt, False)
                for lane in range(nl):
                    for i in range(nn):
                        out[t, b0 + lane, h, i] = nxt[i, lane]
                r, nxt = nxt, r

    @njit(parallel=True, cache=True)
    def _backward(r0, theta, s, pairs, states, g_out, g_theta, g_s):  # pragma: no cover
        t_, b_, h_, n = theta.shape
        nn, chunks = r0.shape[0], (b_ + LANES - 1) // LANES
        for task in prange(h_ * chunks):
            h, b0 = task // chunks, (task % chunks) * LANES
            nl = min(LANES, b_ - b0)
            g, ga = np.zeros((nn, LANES), r0.dtype), np.empty((nn, LANES), r0.dtype)
            a = np.zeros((nn, LANES), r0.dtype)
            c, sn = np.empty((n, LANES), r0.dtype), np.empty((n, LANES), r0.dtype)
            acc = np.zeros((nn, nn, LANES), r0.dtype)  # per-lane sums of g_t a_tᵀ
            for t in range(t_ - 1, -1, -1):
                for lane in range(nl):
                    for j in range(nn):
                        a[j, lane] = states[t - 1, b0 + lane, h, j] if t > 0 else r0[j]
                        g[j, lane] += g_out[t, b0 + lane, h, j]  # total gradient at r_t
                _angles(theta, t, b0, nl, h, c, sn)
                _rot(a, c, sn, pairs, 1.0)  # a_t = Rz(δ_t) r_{t-1}
                for i in range(nn):
                    for j in range(nn):
                        for lane in range(LANES):
                            acc[i, j, lane] += g[i, lane] * a[j, lane]
                _matvec(s, h, g, ga, True)  # gradient at a_t
                for q in range(n):  # d a / d δ_q = J_q a, J_q (x, y) = (-y, x)
                    for lane in range(nl):
                        v = 0.0
                        for k in range(pairs.shape[1]):
                            ix, iy = pairs[q, k, 0], pairs[q, k, 1]
                            v += ga[iy, lane] * a[ix, lane] - ga[ix, lane] * a[iy, lane]
                        g_theta[t, b0 + lane, h, q] = v
                _rot(ga, c, sn, pairs, -1.0)  # Rz(δ)ᵀ = Rz(-δ)
                g, ga = ga, g
            out = g_s[h, task % chunks]
            for i in range(nn):
                for j in range(nn):
                    v = 0.0
                    for lane in range(LANES):
                        v += acc[i, j, lane]
                    out[i, j] = v


class _RzTransferScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r0: Tensor, theta: Tensor, s: Tensor) -> Tensor:
        match_threads()
        r0n, th = r0.to(s.dtype).contiguous().numpy(), theta.to(s.dtype).contiguous()
        sn, pairs = s.detach().contiguous(), rotation_pairs(theta.shape[-1])
        out = torch.empty(*theta.shape[:3], r0.shape[0], dtype=s.dtype)  # (T, B, H, N)
        _forward(r0n, th.detach().numpy(), sn.numpy(), pairs, out.numpy())
        ctx.save_for_backward(r0, th, sn, out)
        return out

    @staticmethod
    def backward(ctx, g_out: Tensor):
        r0, th, s, states = ctx.saved_tensors
        t, b, h, n = th.shape
        g_theta = torch.empty_like(th)
        chunks = (b + LANES - 1) // LANES
        g_s = torch.zeros(h, chunks, *s.shape[1:], dtype=s.dtype)  # per task, summed in order
        _backward(r0.to(s.dtype).contiguous().numpy(), th.detach().numpy(), s.numpy(),
                  rotation_pairs(n), states.numpy(), g_out.contiguous().numpy(),
                  g_theta.numpy(), g_s.numpy())
        return None, g_theta, g_s.sum(1)


def available() -> bool:
    """Whether the numba kernel exists (numba importable)."""
    return njit is not None


def rz_transfer_scan(r0: Tensor, theta: Tensor, s: Tensor) -> Tensor:
    """Fast path (CPU, numba): r0 (N,), θ (T, B, H, n), S (H, N, N) -> states (T, B, H, N).
    Falls back to the reference off the CPU or without numba."""
    if njit is None or theta.device.type != "cpu" or s.dtype not in (torch.float32, torch.float64):
        return rz_transfer_scan_ref(r0, theta, s)
    return _RzTransferScan.apply(r0, theta, s)
