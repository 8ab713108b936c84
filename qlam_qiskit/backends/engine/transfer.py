"""Open-system memories in the Pauli-transfer form: a density matrix as its real Pauli vector.

A memory ρ of n qubits is carried as r_P = Tr(P ρ) over the 4^n Pauli strings P (index Σ_q p_q 4^q,
p = I, X, Y, Z = 0..3, qubit 0 least significant as in Qiskit). Every channel is then a real
4^n × 4^n matrix (its Pauli transfer matrix, PTM) and every readout Tr(O ρ) a real dot product. A
token's update is

    r_t = S · Rz(δ_t) · r_{t-1}        S = A(γ) · R(M)   (fixed per memory, input-independent)

with Rz(δ_t) the input block (RZ(δ_q) on every qubit: the X/Y components of qubit q rotate by δ_q),
R(M) the mixing unitary's PTM and A(γ) amplitude damping of every qubit. Because only the rotation
depends on the token, the scan is one small real mat-vec per token: ``rz_transfer_scan`` runs it as
a numba kernel (the token loop inside, one task per memory over the whole batch, each token one
BLAS call (N, N) @ (N, B); the backward recomputes the rotated inputs from the states);
``rz_transfer_scan_ref`` is the same recurrence in plain autograd, tested against it. Both return
(T, B, H, N); the kernel's array is (H, N, T, B) underneath, so a readout over all memories is
one GEMM on the (H·N, T·B) matrix, with no transpose of the states.
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
    """PTM of unitaries u (H, D, D): R[h, P, Q] = Tr(P U Q U†) / D, real (H, 4^n, 4^n).

    As matrices: Tr(P U Q U†) = Σ P_ab U_bc conj(U_ad) Q_cd = L K V with K = U ⊗ conj(U) over
    index pairs (b, a), (c, d): one product and two small GEMMs per head, which a training step
    pays for every layer (1.2 ms for ``unitary_transfer_ref``'s einsums at the preset's size)."""
    h, d = u.shape[0], u.shape[-1]
    p = paulis.to(u.dtype)  # (N, D, D)
    k = (u[:, :, None, :, None] * u.conj()[:, None, :, None, :]).reshape(h, d * d, d * d)  # K
    left = p.transpose(-1, -2).reshape(-1, d * d)  # (N, D²): row P, column (b, a) = P_ab
    return (left @ k @ p.reshape(-1, d * d).T).real / d  # (H, N, N)


def unitary_transfer_ref(u: Tensor, paulis: Tensor) -> Tensor:
    """Reference of ``unitary_transfer``: the traces as written, by einsum."""
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


if njit is not None:
    @njit(cache=True, inline="always")
    def _copy_rows(src, dst):  # pragma: no cover - compiled
        for j in range(src.shape[0]):
            dj, sj = dst[j], src[j]
            for b in range(src.shape[1]):
                dj[b] = sj[b]

    @njit(cache=True, inline="always")
    def _rotate_rows(dst, c, s, pairs, inverse):  # pragma: no cover - compiled
        """dst = Rz(δ) dst (Rz(-δ) if ``inverse``) in place on every lane: dst (N, B), cos/sin
        c, s (n, B). All in dst's precision: a float64 constant in the loop made it float64."""
        for q in range(pairs.shape[0]):
            cq, sq = c[q], s[q]
            for k in range(pairs.shape[1]):
                rx, ry = dst[pairs[q, k, 0]], dst[pairs[q, k, 1]]
                if inverse:
                    for b in range(dst.shape[1]):
                        x, y = rx[b], ry[b]
                        rx[b] = cq[b] * x + sq[b] * y
                        ry[b] = cq[b] * y - sq[b] * x
                else:
                    for b in range(dst.shape[1]):
                        x, y = rx[b], ry[b]
                        rx[b] = cq[b] * x - sq[b] * y
                        ry[b] = sq[b] * x + cq[b] * y

    @njit(cache=True, inline="always")
    def _previous(dst, states, h, t, r0):  # pragma: no cover - compiled
        """dst (N, B) = memory h's state before token t: states[h, :, t - 1], or r0 at t = 0.
        Row by row: states[h, :, t - 1] is a strided view, which numba does not vectorise
        (several times slower copied whole)."""
        if t > 0:
            for j in range(dst.shape[0]):
                dj, sj = dst[j], states[h, j, t - 1]
                for b in range(dst.shape[1]):
                    dj[b] = sj[b]
        else:
            for j in range(dst.shape[0]):
                for b in range(dst.shape[1]):
                    dst[j, b] = r0[j]

    @njit(cache=True, inline="always")
    def _add_token_grad(g, g_out, h, t):  # pragma: no cover - compiled
        """g (N, B) += the readout's gradient at memory h's state after token t, g_out[h, :, t]:
        the total gradient at r_t."""
        for i in range(g.shape[0]):
            gi, oi = g[i], g_out[h, i, t]
            for b in range(g.shape[1]):
                gi[b] += oi[b]

    @njit(cache=True, inline="always")
    def _add_outer(acc, g, a, outer):  # pragma: no cover - compiled
        """acc (N, N) += Σ_b g aᵀ over the lanes (one BLAS call into ``outer``)."""
        np.dot(g, a.T, outer)
        for i in range(acc.shape[0]):
            for j in range(acc.shape[1]):
                acc[i, j] += outer[i, j]

    @njit(cache=True, inline="always")
    def _angle_grads(g_angle, ga, a, pairs):  # pragma: no cover - compiled
        """g_angle (n, B): the gradient of the angles that rotated the pairs of every qubit q
        into a (N, B), given the gradient ga at a: d a / d δ_q = J_q a, J_q (x, y) = (-y, x)."""
        for q in range(pairs.shape[0]):
            gq = g_angle[q]
            for b in range(gq.shape[0]):
                gq[b] = 0.0
            for k in range(pairs.shape[1]):
                ix, iy = pairs[q, k, 0], pairs[q, k, 1]
                vx, vy, ax, ay = ga[ix], ga[iy], a[ix], a[iy]
                for b in range(gq.shape[0]):
                    gq[b] += vy[b] * ax[b] - vx[b] * ay[b]

    @njit(cache=True)
    def _scan_memory(h, r0, cos, sin, s, pairs, out):  # pragma: no cover - compiled
        """Memory h over the whole batch: r_t = S_h Rz(δ_t) r_{t-1}, (N, B) per token, one BLAS
        call; out[h, :, t] = r_t."""
        nn, b_ = r0.shape[0], cos.shape[3]
        a = np.empty((nn, b_), r0.dtype)
        r = np.empty((nn, b_), r0.dtype)
        for j in range(nn):
            for b in range(b_):
                r[j, b] = r0[j]
        for t in range(cos.shape[0]):
            _copy_rows(r, a)
            _rotate_rows(a, cos[t, h], sin[t, h], pairs, False)
            np.dot(s[h], a, r)  # (N, N) @ (N, B)
            for j in range(nn):
                oj, rj = out[h, j, t], r[j]
                for b in range(b_):
                    oj[b] = rj[b]

    @njit(parallel=True, cache=True)
    def _forward(r0, cos, sin, s, pairs, out):  # pragma: no cover - compiled
        for h in prange(cos.shape[1]):  # one task per memory (a prange body compiles worse)
            _scan_memory(h, r0, cos, sin, s, pairs, out)

    @njit(cache=True)
    def _scan_memory_back(h, r0, cos, sin, st, pairs, states, g_out, g_theta,
                          g_s):  # pragma: no cover - compiled
        """Memory h backwards: the gradient g_t at every state, from it g_θ and g_S = Σ_t g_t a_tᵀ
        with a_t = Rz(δ_t) r_{t-1} (recomputed from the states), two BLAS calls per token."""
        nn, b_ = r0.shape[0], cos.shape[3]
        g = np.zeros((nn, b_), r0.dtype)
        ga = np.empty((nn, b_), r0.dtype)
        a = np.empty((nn, b_), r0.dtype)
        outer = np.empty((nn, nn), r0.dtype)
        acc = g_s[h]
        acc[:] = 0.0
        for t in range(cos.shape[0] - 1, -1, -1):
            _add_token_grad(g, g_out, h, t)
            _previous(a, states, h, t, r0)
            _rotate_rows(a, cos[t, h], sin[t, h], pairs, False)
            _add_outer(acc, g, a, outer)  # g_S += g_t a_tᵀ
            np.dot(st[h], g, ga)  # gradient at a_t: Sᵀ g_t
            _angle_grads(g_theta[t, h], ga, a, pairs)
            _rotate_rows(ga, cos[t, h], sin[t, h], pairs, True)  # Rz(δ)ᵀ = Rz(-δ)
            g, ga = ga, g

    @njit(parallel=True, cache=True)
    def _backward(r0, cos, sin, st, pairs, states, g_out, g_theta,
                  g_s):  # pragma: no cover - compiled
        for h in prange(cos.shape[1]):
            _scan_memory_back(h, r0, cos, sin, st, pairs, states, g_out, g_theta, g_s)


class _RzTransferScan(torch.autograd.Function):
    """The kernel runs lanes-last: every inner loop runs over the batch, and each token's update
    is one BLAS call (N, N) @ (N, B) per memory. It keeps the states as (H, N, T, B), returned
    seen as (T, B, H, N): ``.permute(2, 3, 0, 1)`` gives the (H·N, T·B) matrix back without a
    copy, so a readout over all memories is one GEMM, as is its backward."""

    @staticmethod
    def forward(ctx, r0: Tensor, theta: Tensor, s: Tensor) -> Tensor:
        match_threads()
        dtype = s.dtype
        th = theta.detach().to(dtype).permute(0, 2, 3, 1).contiguous()  # (T, H, n, B)
        cos, sin = torch.cos(th), torch.sin(th)
        sd, pairs = s.detach().contiguous(), rotation_pairs(theta.shape[-1])
        r0d = r0.detach().to(dtype).contiguous()
        t, b, h, _ = theta.shape
        out = torch.empty(h, r0.shape[0], t, b, dtype=dtype)  # (H, N, T, B)
        _forward(r0d.numpy(), cos.numpy(), sin.numpy(), sd.numpy(), pairs, out.numpy())
        ctx.save_for_backward(r0d, cos, sin, sd, out)
        return out.permute(2, 3, 0, 1)  # (T, B, H, N), a view

    @staticmethod
    def backward(ctx, g_out: Tensor):
        r0, cos, sin, s, states = ctx.saved_tensors
        t, h, n, b = cos.shape
        go = g_out.to(s.dtype).permute(2, 3, 0, 1).contiguous()  # (H, N, T, B)
        g_theta = torch.empty(t, h, n, b, dtype=s.dtype)
        g_s = torch.empty_like(s)
        _backward(r0.numpy(), cos.numpy(), sin.numpy(), s.transpose(1, 2).contiguous().numpy(),
                  rotation_pairs(n), states.numpy(), go.numpy(), g_theta.numpy(), g_s.numpy())
        return None, g_theta.permute(0, 3, 1, 2), g_s  # (T, B, H, n), (H, N, N)


def available() -> bool:
    """Whether the numba kernel exists (numba importable)."""
    return njit is not None


def rz_transfer_scan(r0: Tensor, theta: Tensor, s: Tensor) -> Tensor:
    """Fast path (CPU, numba): r0 (N,), θ (T, B, H, n), S (H, N, N) -> states (T, B, H, N).
    Falls back to the reference off the CPU or without numba."""
    if njit is None or theta.device.type != "cpu" or s.dtype not in (torch.float32, torch.float64):
        return rz_transfer_scan_ref(r0, theta, s)
    return _RzTransferScan.apply(r0, theta, s)
