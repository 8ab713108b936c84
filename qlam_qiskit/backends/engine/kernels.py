"""Fused CPU kernel for product-form QLAM scans (numba), with its own adjoint backward pass.

Each sample's 2^n amplitudes stay in cache for the whole sequence: per token the kernel builds the
input phases from n angle pairs, multiplies them in, and applies every one-qubit unitary as an
in-place butterfly and every diagonal as a product, O(n·2^n) work with no 2^n×2^n matrix.
Backward walks back in time recomputing states by the inverse (unitary) updates, so memory does
not grow with T; stored states (every token, or every k-th as anchors) restart the walk exactly.
Samples run in parallel threads. ``product.product_scan_ref`` is the plain-autograd reference.
No fastmath: every vectorized loop is elementwise over lanes (sums across lanes happen once, at
the end), so results are bit-identical whether the kernel was just compiled or loaded from
numba's cache (with fastmath they were not, and a run's first use gave other digits).
"""

from __future__ import annotations

import numpy as np
import torch

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a dependency; this keeps import errors readable
    numba = None

Tensor = torch.Tensor


def available() -> bool:
    """Whether the fused CPU kernel can run (numba importable)."""
    return numba is not None


if numba is not None:
    _jit = njit(cache=True, nogil=True)

    # States live planar and batch-minor inside the kernel: xr, xi (D, lanes), so every
    # butterfly, phase and diagonal is a loop over contiguous lanes (SIMD) for any qubit.

    @_jit
    def _angles(theta, t, s0, nl, a_in, off_h, gq, loc, al):  # pragma: no cover - compiled
        """Per-qubit phase angles al (n, 2, lanes) of token t: gate g adds
        (off_h[g] + a_in[g] · θ[t, s]) · loc[g] to al[gq[g]]."""
        al[:, :, :nl] = 0.0
        for g in range(a_in.shape[0]):
            q, l0, l1 = gq[g], loc[g, 0], loc[g, 1]
            for s in range(nl):
                ang = off_h[g]
                for j in range(a_in.shape[1]):
                    ang += a_in[g, j] * theta[t, s0 + s, j]
                al[q, 0, s] += ang * l0
                al[q, 1, s] += ang * l1

    @_jit
    def _factors(al, nl, fr, fi, cs):  # pragma: no cover - compiled
        """f[i, s] = exp(i Σ_q al[q, bit_q(i), s]) for al (n, 2, lanes), into fr, fi (D, lanes);
        cs (4, lanes) is scratch for one qubit's cos/sin."""
        n = al.shape[0]
        for s in range(nl):
            fr[0, s] = 1.0
            fi[0, s] = 0.0
        size = 1
        for q in range(n):
            for s in range(nl):
                a0, a1 = al[q, 0, s], al[q, 1, s]
                cs[0, s], cs[1, s], cs[2, s], cs[3, s] = np.cos(a0), np.sin(a0), np.cos(a1), np.sin(a1)
            for j in range(size):
                for s in range(nl):
                    vr, vi = fr[j, s], fi[j, s]
                    c0, n0, c1, n1 = cs[0, s], cs[1, s], cs[2, s], cs[3, s]
                    fr[j + size, s] = vr * c1 - vi * n1
                    fi[j + size, s] = vr * n1 + vi * c1
                    fr[j, s] = vr * c0 - vi * n0
                    fi[j, s] = vr * n0 + vi * c0
            size *= 2

    @_jit
    def _mul(xr, xi, fr, fi, nl, conj):  # pragma: no cover - compiled
        """x ⊙= f (or conj f), per lane."""
        sg = -1.0 if conj else 1.0
        for i in range(xr.shape[0]):
            for s in range(nl):
                a, b, c, d = xr[i, s], xi[i, s], fr[i, s], sg * fi[i, s]
                xr[i, s] = a * c - b * d
                xi[i, s] = a * d + b * c

    @_jit
    def _butterfly(xr, xi, m, q, nl):  # pragma: no cover - compiled
        """Apply the 2×2 matrix m on qubit q of every lane's state, in place."""
        step = 1 << q
        ar_, ai_ = m[0, 0].real, m[0, 0].imag
        br_, bi_ = m[0, 1].real, m[0, 1].imag
        cr_, ci_ = m[1, 0].real, m[1, 0].imag
        dr_, di_ = m[1, 1].real, m[1, 1].imag
        for base in range(0, xr.shape[0], 2 * step):
            for j in range(base, base + step):
                k = j + step
                for s in range(nl):
                    pr, pi, qr, qi = xr[j, s], xi[j, s], xr[k, s], xi[k, s]
                    xr[j, s] = ar_ * pr - ai_ * pi + br_ * qr - bi_ * qi
                    xi[j, s] = ar_ * pi + ai_ * pr + br_ * qi + bi_ * qr
                    xr[k, s] = cr_ * pr - ci_ * pi + dr_ * qr - di_ * qi
                    xi[k, s] = cr_ * pi + ci_ * pr + dr_ * qi + di_ * qr

    @_jit
    def _butterfly_back(xr, xi, gr, gi, m, q, nl, acc):  # pragma: no cover - compiled
        """Undo the butterfly on x and pull its gradient g back; acc (8, lanes) += per lane the
        real and imaginary parts of g_out ⊗ conj(in), the 2×2 gradient of m (``_sum_gate``).
        Per-lane float64 sums keep the loop vectorized and the reduction order fixed."""
        step = 1 << q
        ar_, ai_ = m[0, 0].real, -m[0, 0].imag  # Mᴴ = [[conj a, conj c], [conj b, conj d]]
        br_, bi_ = m[0, 1].real, -m[0, 1].imag
        cr_, ci_ = m[1, 0].real, -m[1, 0].imag
        dr_, di_ = m[1, 1].real, -m[1, 1].imag
        for base in range(0, xr.shape[0], 2 * step):
            for j in range(base, base + step):
                k = j + step
                for s in range(nl):
                    pr, pi, qr, qi = xr[j, s], xi[j, s], xr[k, s], xi[k, s]
                    a_r = ar_ * pr - ai_ * pi + cr_ * qr - ci_ * qi  # in = Mᴴ out
                    a_i = ar_ * pi + ai_ * pr + cr_ * qi + ci_ * qr
                    b_r = br_ * pr - bi_ * pi + dr_ * qr - di_ * qi
                    b_i = br_ * pi + bi_ * pr + dr_ * qi + di_ * qr
                    xr[j, s], xi[j, s], xr[k, s], xi[k, s] = a_r, a_i, b_r, b_i
                    pr, pi, qr, qi = gr[j, s], gi[j, s], gr[k, s], gi[k, s]
                    gr[j, s] = ar_ * pr - ai_ * pi + cr_ * qr - ci_ * qi
                    gi[j, s] = ar_ * pi + ai_ * pr + cr_ * qi + ci_ * qr
                    gr[k, s] = br_ * pr - bi_ * pi + dr_ * qr - di_ * qi
                    gi[k, s] = br_ * pi + bi_ * pr + dr_ * qi + di_ * qr
                    # g_out ⊗ conj(in): (pr + i pi)(a_r - i a_i) etc.
                    acc[0, s] += pr * a_r + pi * a_i
                    acc[1, s] += pi * a_r - pr * a_i
                    acc[2, s] += pr * b_r + pi * b_i
                    acc[3, s] += pi * b_r - pr * b_i
                    acc[4, s] += qr * a_r + qi * a_i
                    acc[5, s] += qi * a_r - qr * a_i
                    acc[6, s] += qr * b_r + qi * b_i
                    acc[7, s] += qi * b_r - qr * b_i

    @_jit
    def _sum_gate(acc, nl, gm):  # pragma: no cover - compiled
        """gm (2, 2) complex += the lane sums of a ``_butterfly_back`` accumulator acc (8, lanes)."""
        tot = np.zeros(8)
        for c in range(8):
            for s in range(nl):
                tot[c] += acc[c, s]
        gm[0, 0] += tot[0] + 1j * tot[1]
        gm[0, 1] += tot[2] + 1j * tot[3]
        gm[1, 0] += tot[4] + 1j * tot[5]
        gm[1, 1] += tot[6] + 1j * tot[7]

    @_jit
    def _mix(xr, xi, u, e, nl):  # pragma: no cover - compiled
        """The mixing layers of one token: per layer, the one-qubit unitaries u (L, n, 2, 2) as
        butterflies, then the diagonal e (L, D)."""
        for lay in range(u.shape[0]):
            for q in range(u.shape[1]):
                _butterfly(xr, xi, u[lay, q], q, nl)
            el = e[lay]
            for i in range(xr.shape[0]):
                er, ei = el[i].real, el[i].imag
                for s in range(nl):
                    a, b = xr[i, s], xi[i, s]
                    xr[i, s] = a * er - b * ei
                    xi[i, s] = a * ei + b * er

    @_jit
    def _mix_back(xr, xi, gr, gi, u, e, nl, acc_u, acc_e):  # pragma: no cover - compiled
        """Undo ``_mix`` on x and pull g back through it; per-lane gradient sums go to
        acc_u (L, n, 8, lanes) (``_butterfly_back``) and acc_e (L, D, 2, lanes) (g · conj(z))."""
        for lay in range(u.shape[0] - 1, -1, -1):
            el = e[lay]
            for i in range(xr.shape[0]):
                er, ei = el[i].real, -el[i].imag  # conj e
                for s in range(nl):
                    a, b = xr[i, s], xi[i, s]
                    zr, zi = a * er - b * ei, a * ei + b * er  # state before the diagonal
                    xr[i, s], xi[i, s] = zr, zi
                    c, dd = gr[i, s], gi[i, s]
                    acc_e[lay, i, 0, s] += c * zr + dd * zi  # g · conj(z), per lane
                    acc_e[lay, i, 1, s] += dd * zr - c * zi
                    gr[i, s], gi[i, s] = c * er - dd * ei, c * ei + dd * er
            for q in range(u.shape[1] - 1, -1, -1):
                _butterfly_back(xr, xi, gr, gi, u[lay, q], q, nl, acc_u[lay, q])

    @_jit
    def _phase_grad(xr, xi, gr, gi, nl, tr, g_al):  # pragma: no cover - compiled
        """For x = ψ ⊙ f with f[i] = exp(i Σ_q α[q, bit_q(i)]) and g = dL/dx: g_al (n, 2, lanes)
        = dL/dα = Σ_{i: bit_q(i) = bit} Im(g_i conj x_i); tr (D, lanes) is scratch."""
        d = xr.shape[0]
        for i in range(d):
            for s in range(nl):
                tr[i, s] = gi[i, s] * xr[i, s] - gr[i, s] * xi[i, s]
        g_al[:, :, :nl] = 0.0
        for q in range(g_al.shape[0]):
            step = 1 << q
            for base in range(0, d, 2 * step):
                for j in range(base, base + step):
                    for s in range(nl):
                        g_al[q, 0, s] += tr[j, s]
                        g_al[q, 1, s] += tr[j + step, s]

    @_jit
    def _load(dst_r, dst_i, src, s0, nl):  # pragma: no cover - compiled
        """Planar (D, lanes) <- complex src[s0 + s, i]."""
        for s in range(nl):
            for i in range(dst_r.shape[0]):
                v = src[s0 + s, i]
                dst_r[i, s] = v.real
                dst_i[i, s] = v.imag

    @_jit
    def _store(dst, src_r, src_i, s0, nl):  # pragma: no cover - compiled
        """complex dst[s0 + s, i] <- planar (D, lanes)."""
        for s in range(nl):
            for i in range(src_r.shape[0]):
                dst[s0 + s, i] = src_r[i, s] + 1j * src_i[i, s]

    @_jit
    def _sum_lanes(acc_u, acc_e, nl, gu, ge):  # pragma: no cover - compiled
        """A task's per-lane sums -> gu (L, n, 2, 2) and ge (L, D) complex."""
        for lay in range(acc_u.shape[0]):
            for q in range(acc_u.shape[1]):
                _sum_gate(acc_u[lay, q], nl, gu[lay, q])
            for i in range(acc_e.shape[1]):
                sr = si = 0.0
                for s in range(nl):
                    sr += acc_e[lay, i, 0, s]
                    si += acc_e[lay, i, 1, s]
                ge[lay, i] = sr + 1j * si

    @njit(parallel=True, cache=True)
    def _forward(psi0, theta, a_in, off, gq, loc, u, e, nb, lanes, keep,
                 every):  # pragma: no cover - compiled
        """psi0 (S, D), θ (T, S, m), input map a_in (G, m), offsets off (H, G), gate qubits gq (G,),
        phases per unit angle loc (G, 2), u (H, L, n, 2, 2), e (H, L, D); S = H·nb samples, run
        in tasks of ``lanes`` samples of one head. Returns ψ_T (S, D); when every > 0 the state
        after token t goes to keep[(t+1)//every - 1] whenever (t+1) % every == 0."""
        s_len, d = psi0.shape
        t_len = theta.shape[0]
        n = u.shape[2]
        per_head = (nb + lanes - 1) // lanes
        out = np.empty_like(psi0)
        for task in prange((s_len // nb) * per_head):
            h = task // per_head
            s0 = h * nb + (task % per_head) * lanes
            nl = min(lanes, h * nb + nb - s0)
            xr = np.empty((d, lanes), dtype=theta.dtype)
            xi, fr, fi = np.empty_like(xr), np.empty_like(xr), np.empty_like(xr)
            cs = np.empty((4, lanes), dtype=theta.dtype)
            al = np.empty((n, 2, lanes), dtype=theta.dtype)
            _load(xr, xi, psi0, s0, nl)
            for t in range(t_len):
                _angles(theta, t, s0, nl, a_in, off[h], gq, loc, al)
                _factors(al, nl, fr, fi, cs)
                _mul(xr, xi, fr, fi, nl, False)
                _mix(xr, xi, u[h], e[h], nl)
                if every > 0 and (t + 1) % every == 0:
                    _store(keep[(t + 1) // every - 1], xr, xi, s0, nl)
            _store(out, xr, xi, s0, nl)
        return out

    @njit(parallel=True, cache=True)
    def _backward(psi_t, g_t, g_all, theta, a_in, off, gq, loc, u, e, nb, lanes, keep,
                  every):  # pragma: no cover - compiled
        """Adjoint walk from ψ_T (S, D) and dL/dψ_T (S, D), adding dL/dψ_t from g_all (T, S, D)
        when it is not empty. Returns dL/dψ0 (S, D), dL/dθ (T, S, m), and per-task dL/d(offsets)
        (tasks, G), dL/dU (tasks, L, n, 2, 2) and dL/de (tasks, L, D), to be summed per head."""
        s_len, d = psi_t.shape
        t_len = theta.shape[0]
        n_lay, n = u.shape[1], u.shape[2]
        n_gate = a_in.shape[0]
        has_all = g_all.shape[0] > 0
        per_head = (nb + lanes - 1) // lanes
        n_task = (s_len // nb) * per_head
        g_psi0 = np.empty_like(psi_t)
        g_theta = np.zeros_like(theta)
        g_off = np.zeros((n_task, n_gate), dtype=np.float64)
        g_u = np.zeros((n_task,) + u.shape[1:], dtype=np.complex128)
        g_e = np.zeros((n_task, n_lay, d), dtype=np.complex128)
        for task in prange(n_task):
            h = task // per_head
            s0 = h * nb + (task % per_head) * lanes
            nl = min(lanes, h * nb + nb - s0)
            xr = np.empty((d, lanes), dtype=theta.dtype)
            xi, gr, gi = np.empty_like(xr), np.empty_like(xr), np.empty_like(xr)
            fr, fi, tr, ti = np.empty_like(xr), np.empty_like(xr), np.empty_like(xr), np.empty_like(xr)
            cs = np.empty((4, lanes), dtype=theta.dtype)
            al = np.empty((n, 2, lanes), dtype=theta.dtype)
            g_al = np.empty((n, 2, lanes), dtype=theta.dtype)
            acc_u = np.zeros((n_lay, n, 8, lanes))  # per-lane gradient sums, reduced at the end
            acc_e = np.zeros((n_lay, d, 2, lanes))
            _load(xr, xi, psi_t, s0, nl)
            _load(gr, gi, g_t, s0, nl)
            go = g_off[task]
            for t in range(t_len - 1, -1, -1):
                if has_all:
                    _load(tr, ti, g_all[t], s0, nl)
                    for i in range(d):
                        for s in range(nl):
                            gr[i, s] += tr[i, s]
                            gi[i, s] += ti[i, s]
                _mix_back(xr, xi, gr, gi, u[h], e[h], nl, acc_u, acc_e)
                _phase_grad(xr, xi, gr, gi, nl, tr, g_al)
                for g in range(n_gate):  # back through angle_g = off[h, g] + a_in[g] · θ
                    q, l0, l1 = gq[g], loc[g, 0], loc[g, 1]
                    tot = 0.0
                    for s in range(nl):
                        ga = g_al[q, 0, s] * l0 + g_al[q, 1, s] * l1
                        tot += ga
                        for j in range(a_in.shape[1]):
                            g_theta[t, s0 + s, j] += a_in[g, j] * ga
                    go[g] += tot
                _angles(theta, t, s0, nl, a_in, off[h], gq, loc, al)
                _factors(al, nl, fr, fi, cs)
                _mul(xr, xi, fr, fi, nl, True)
                _mul(gr, gi, fr, fi, nl, True)
                if every > 0 and t % every == 0 and t > 0:
                    _load(xr, xi, keep[t // every - 1], s0, nl)  # stored ψ_{t-1}: restart exactly
            _sum_lanes(acc_u, acc_e, nl, g_u[task], g_e[task])
            _store(g_psi0, gr, gi, s0, nl)
        return g_psi0, g_theta, g_off, g_u, g_e


def match_threads() -> int:
    """Run numba's parallel loops on torch's thread count, and keep torch's count as it was.

    numba starts its thread pool on first use and, sharing OpenMP's runtime with torch, resets
    OpenMP's thread count to its own (every core) as it does: without this, a run asked for one
    thread ran torch on all cores after the first kernel call. Returns the thread count."""
    want = torch.get_num_threads()
    numba.set_num_threads(max(1, min(want, numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)
    return want


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _lanes(h: int, b: int, d: int) -> int:
    """Samples per task: many for SIMD, few enough that a task's states stay in cache (measured
    best near 2^15 amplitudes), and enough tasks to keep every thread busy."""
    lanes = min(b, 128, max(16, 2**15 // d))
    threads = numba.get_num_threads()
    if h * -(-b // lanes) < threads:  # too few tasks: split each head's batch further
        lanes = max(min(b, 8), -(-b // -(-threads // h)))
    return lanes


class _ProductScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, psi0: Tensor, theta: Tensor, a_in: Tensor, off: Tensor, gq: Tensor,
                loc: Tensor, u: Tensor, e: Tensor, all_states: bool, anchor_every: int) -> Tensor:
        h, b, d = psi0.shape
        t_len = theta.shape[0]
        every = 1 if all_states else anchor_every
        lanes = _lanes(h, b, d)
        keep = torch.empty((t_len // every if every else 0, h * b, d), dtype=psi0.dtype)
        consts = (_np(a_in), _np(off), _np(gq), _np(loc), _np(u), _np(e))
        last = _forward(_np(psi0.reshape(h * b, d)), _np(theta.reshape(t_len, h * b, -1)),
                        *consts, b, lanes, keep.numpy(), every)
        last = torch.from_numpy(last).view(h, b, d)
        ctx.every, ctx.all_states, ctx.lanes = every, all_states, lanes
        ctx.save_for_backward(theta, a_in, off, gq, loc, u, e, last, keep)
        return keep.view(t_len, h, b, d) if all_states else last

    @staticmethod
    def backward(ctx, g_out: Tensor):
        theta, a_in, off, gq, loc, u, e, last, keep = ctx.saved_tensors
        h, b, d = last.shape
        t_len = theta.shape[0]
        if ctx.all_states:
            g_last = torch.zeros(h * b, d, dtype=last.dtype)
            g_all = g_out.reshape(t_len, h * b, d)
        else:
            g_last = g_out.reshape(h * b, d)
            g_all = torch.empty(0, h * b, d, dtype=last.dtype)
        g0, g_th, g_off, gu, ge = _backward(
            _np(last.reshape(h * b, d)), _np(g_last), _np(g_all), _np(theta.reshape(t_len, h * b, -1)),
            _np(a_in), _np(off), _np(gq), _np(loc), _np(u), _np(e), b, ctx.lanes, keep.numpy(),
            ctx.every)
        g_off = torch.from_numpy(g_off).view(h, -1, off.shape[-1]).sum(1).to(off.dtype)
        gu = torch.from_numpy(gu).view(h, -1, *u.shape[1:]).sum(1).to(u.dtype)
        ge = torch.from_numpy(ge).view(h, -1, *e.shape[1:]).sum(1).to(e.dtype)
        return (torch.from_numpy(g0).view(h, b, d), torch.from_numpy(g_th).view(theta.shape),
                None, g_off, None, None, gu, ge, None, None)


def product_scan(psi0: Tensor, theta: Tensor, a_in: Tensor, off: Tensor, qubits: Tensor,
                 local: Tensor, u: Tensor, e: Tensor, *, all_states: bool = True,
                 anchor_every: int = 0) -> Tensor:
    """Fused CPU scan: ψ0 (H, B, D), inputs θ (T, H, B, m), input map A (G, m) and offsets
    o (H, G) giving the angles θ Aᵀ + o of G one-qubit diagonal gates on ``qubits`` (G,) with
    phases per unit angle ``local`` (G, 2); U (H, L, n, 2, 2), e (H, L, D) ->
    states (T, H, B, D), or the last (H, B, D) with backward in memory independent of T.

    The same function as ``product.product_scan_ref``. Differentiable in ψ0, θ, o, U and e.
    ``anchor_every`` k > 0 keeps every k-th state in last-state mode so the backward walk restarts
    from it (bounds round-off drift)."""
    if numba is None:
        raise RuntimeError("the fused kernel needs numba: pip install numba")
    match_threads()
    real = torch.float64 if psi0.dtype == torch.complex128 else torch.float32
    return _ProductScan.apply(psi0.contiguous(), theta.to(real).contiguous(),
                              a_in.to(real).contiguous(), off.to(real).contiguous(),
                              qubits.to(torch.int64).contiguous(), local.to(real).contiguous(),
                              u.to(psi0.dtype).contiguous(), e.to(psi0.dtype).contiguous(),
                              all_states, anchor_every)

