"""The fused product-form scan as numba-cuda kernels (built per shape, run on a GPU or in numba's
CUDA simulator).

One thread block holds ``spb`` samples of one head; each sample's 2^n amplitudes stay in shared
memory (or, when they do not fit, in a per-block slice of a global work buffer) for the whole
sequence, worked on by ``tps`` threads. Layout inside a block, planar: X[s·D + i] = Re ψ_s[i],
X[spb·D + s·D + i] = Im ψ_s[i]. Thread j of a sample owns amplitudes i = j + k·tps (phases,
diagonals, loads, stores, readout sums) and butterfly pairs p = j + k·tps (a one-qubit gate on
qubit q pairs i0 = p with a 0 inserted at bit q and i1 = i0 | 2^q), so every step is one in-place
pass with a ``syncthreads`` between passes that read other threads' amplitudes. All shared arrays
are carved from one dynamic shared allocation (``layout``): static ``cuda.shared.array`` calls
race in numba's simulator (two threads can each create "the" array), dynamic ones do not.

Per token: X ⊙= f_t (f_t[i] = Π_q (cos α + i sin α)[q, bit_q(i)], from precomputed cos/sin),
then per layer the n butterflies and the diagonal; with the readout, each query's rotation is
applied to a copy (AA) and |amp|² is summed against the Z-term signs (a tree reduction over the
sample's threads). Backward walks back by the inverse updates (Mᴴ, conj e, conj f) from the last
state, carrying dL/dψ in G and, for the readout, dL/d(amp) in GA; stored states (every token or
every k-th) restart the walk exactly. Gradients of the shared gates are summed per thread in
float64, then per block (a tree over the block); dL/dα per token is reduced over the sample's
threads.

All loops are uniform across the block (T, L, n, K are the same for every thread) and samples past
the batch (a ragged last block) run on zeros and store nothing, so every thread reaches every
``syncthreads``.
"""

from __future__ import annotations

from functools import lru_cache

from numba import cuda, float32, float64  # module level: the simulator swaps this module's `cuda`


@lru_cache(maxsize=None)
def build(n: int, layers: int, queries: int, terms: int, tps: int, double: bool, shared: bool):
    """Forward and backward kernels for n qubits, L layers, K queries of M terms (K = 0: no
    readout), ``tps`` threads per sample, float64 or float32, states in shared memory or in a
    global work buffer (the kernels' last argument, (blocks, arrays, 2·spb·D)). The samples per
    block (spb) is the launch's: block size / tps, with ``shared_bytes(...)`` of dynamic shared
    memory; everything else is a compile-time constant (loops unroll, accumulators in registers)."""
    f = float64 if double else float32
    d = 1 << n
    amps = d // tps  # amplitudes per thread
    pairs = max(1, d // 2 // tps)  # butterfly pairs per thread per gate
    logt = tps.bit_length() - 1  # bits of i taken from the thread index j
    big_l, big_k, big_m = layers, queries, terms
    read = big_k > 0
    rows = max(n + 1, big_m, 1)  # reduction rows per thread
    real_bytes = 8 if double else 4
    nu = max(1, big_l * n * 8)
    nr = max(1, big_k * n * 8)
    ne = max(1, big_l * amps * 2)

    @cuda.jit(device=True)
    def pair(p, q):
        """Butterfly pair index p on qubit q -> (i0, i1)."""
        i0 = ((p >> q) << (q + 1)) | (p & ((1 << q) - 1))
        return i0, i0 | (1 << q)

    @cuda.jit(device=True)
    def butterfly(x, base, j, q, m, mo):
        """x ← (M on qubit q) x for the pairs of thread j; M is m[mo:mo+8] (re, im row-major)."""
        im = x.shape[0] // 2  # x[i]: Re ψ, x[im + i]: Im ψ
        ar, ai, br, bi = m[mo], m[mo + 1], m[mo + 2], m[mo + 3]
        cr, ci, dr, di = m[mo + 4], m[mo + 5], m[mo + 6], m[mo + 7]
        for k in range(pairs):
            i0, i1 = pair(j + k * tps, q)
            i0 += base
            i1 += base
            pr, pi, qr, qi = x[i0], x[im + i0], x[i1], x[im + i1]
            x[i0] = ar * pr - ai * pi + br * qr - bi * qi
            x[im + i0] = ar * pi + ai * pr + br * qi + bi * qr
            x[i1] = cr * pr - ci * pi + dr * qr - di * qi
            x[im + i1] = cr * pi + ci * pr + dr * qi + di * qr

    @cuda.jit(device=True)
    def butterfly_back(x, g, base, j, q, m, mo, acc, ao):
        """Undo the butterfly on x (x ← Mᴴ x), pull g back (g ← Mᴴ g) and add
        g_out ⊗ conj(x_in) to acc[ao:ao+8] (the gradient of M, re/im row-major)."""
        im = x.shape[0] // 2
        ar, ai, br, bi = m[mo], -m[mo + 1], m[mo + 2], -m[mo + 3]  # conjugates: Mᴴ = [[a*, c*],
        cr, ci, dr, di = m[mo + 4], -m[mo + 5], m[mo + 6], -m[mo + 7]  # [b*, d*]]
        for k in range(pairs):
            i0, i1 = pair(j + k * tps, q)
            i0 += base
            i1 += base
            pr, pi, qr, qi = x[i0], x[im + i0], x[i1], x[im + i1]
            a_r = ar * pr - ai * pi + cr * qr - ci * qi  # in = Mᴴ out
            a_i = ar * pi + ai * pr + cr * qi + ci * qr
            b_r = br * pr - bi * pi + dr * qr - di * qi
            b_i = br * pi + bi * pr + dr * qi + di * qr
            x[i0] = a_r
            x[im + i0] = a_i
            x[i1] = b_r
            x[im + i1] = b_i
            pr, pi, qr, qi = g[i0], g[im + i0], g[i1], g[im + i1]
            g[i0] = ar * pr - ai * pi + cr * qr - ci * qi
            g[im + i0] = ar * pi + ai * pr + cr * qi + ci * qr
            g[i1] = br * pr - bi * pi + dr * qr - di * qi
            g[im + i1] = br * pi + bi * pr + dr * qi + di * qr
            acc[ao] += pr * a_r + pi * a_i  # g_out[0] conj(in[0])
            acc[ao + 1] += pi * a_r - pr * a_i
            acc[ao + 2] += pr * b_r + pi * b_i  # g_out[0] conj(in[1])
            acc[ao + 3] += pi * b_r - pr * b_i
            acc[ao + 4] += qr * a_r + qi * a_i  # g_out[1] conj(in[0])
            acc[ao + 5] += qi * a_r - qr * a_i
            acc[ao + 6] += qr * b_r + qi * b_i  # g_out[1] conj(in[1])
            acc[ao + 7] += qi * b_r - qr * b_i

    @cuda.jit(device=True)
    def low_phase(cs, t, h, b, j):
        """Π over the qubits q < log2(tps) of (cos, sin)[q, bit_q(j)]: the part of f_t[i] shared by
        all amplitudes of thread j."""
        fr, fi = f(1.0), f(0.0)
        for q in range(logt):
            bit = (j >> q) & 1
            c, s = cs[t, h, b, q, bit, 0], cs[t, h, b, q, bit, 1]
            fr, fi = fr * c - fi * s, fr * s + fi * c
        return fr, fi

    @cuda.jit(device=True)
    def phase(cs, t, h, b, k, fr, fi):
        """f_t[j + k·tps] from thread j's low part (fr, fi) and the high bits, taken from k."""
        for q in range(logt, n):
            bit = (k >> (q - logt)) & 1
            c, s = cs[t, h, b, q, bit, 0], cs[t, h, b, q, bit, 1]
            fr, fi = fr * c - fi * s, fr * s + fi * c
        return fr, fi

    @cuda.jit(device=True)
    def tree(red, nrows, tid, width):
        """Row sums over aligned groups of ``width`` threads: red[r·nt + tid] of a group's first
        thread ← Σ over the group; ``syncthreads`` before each step and after the last."""
        nt = cuda.blockDim.x
        st = width // 2
        while st > 0:
            cuda.syncthreads()
            if tid % width < st:
                for r in range(nrows):
                    red[r * nt + tid] += red[r * nt + tid + st]
            st //= 2
        cuda.syncthreads()

    @cuda.jit(device=True)
    def load_gates(uq, rq, uu, rr, h):
        """This head's layer gates (and query rotations) into shared memory, 8 reals per 2×2."""
        tid, nt = cuda.threadIdx.x, cuda.blockDim.x
        for c in range(tid, big_l * n * 8, nt):
            g = c // 8
            w = c % 8
            uq[c] = uu[h, g // n, g % n, w // 4, (w // 2) % 2, w % 2]
        if read:
            for c in range(tid, big_k * n * 8, nt):
                g = c // 8
                w = c % 8
                rq[c] = rr[h, g // n, g % n, w // 4, (w // 2) % 2, w % 2]
        cuda.syncthreads()

    @cuda.jit(device=True)
    def read_forward(x, aa, red, rq, zz, y, t, h, b, base, j, tid, valid):
        """y[t, h, b, k, c] = Σ_i |((⊗_q R_kq) ψ)_i|² z[i, c] for every query k."""
        im, nt = x.shape[0] // 2, cuda.blockDim.x
        for kq in range(big_k):
            for k in range(amps):
                i = base + j + k * tps
                aa[i] = x[i]
                aa[im + i] = x[im + i]
            for q in range(n):
                cuda.syncthreads()
                butterfly(aa, base, j, q, rq, (kq * n + q) * 8)
            cuda.syncthreads()
            for c in range(big_m):
                red[c * nt + tid] = 0.0
            for k in range(amps):
                i = j + k * tps
                p = aa[base + i] * aa[base + i] + aa[im + base + i] * aa[im + base + i]
                for c in range(big_m):
                    red[c * nt + tid] += p * zz[i, c]
            tree(red, big_m, tid, tps)
            if j == 0 and valid:
                for c in range(big_m):
                    y[t, h, b, kq, c] = red[c * nt + tid]

    @cuda.jit(device=True)
    def fwd_body(x, aa, red, uq, rq, psi0, cs, uu, ee, rr, zz, keep, last, y, nb, every):
        tid = cuda.threadIdx.x
        blk = cuda.blockIdx.x
        nt = cuda.blockDim.x
        spb = nt // tps
        im = x.shape[0] // 2
        sl, j = tid // tps, tid % tps
        h = blk // nb
        b0 = (blk % nb) * spb
        b = b0 + sl
        valid = b < psi0.shape[1]
        bb = b if valid else b0  # in-bounds reads for samples past the batch
        base = sl * d
        t_len = cs.shape[0]
        load_gates(uq, rq, uu, rr, h)
        for k in range(amps):
            i = j + k * tps
            xr = f(0.0)
            xi = f(0.0)
            if valid:
                xr = psi0[h, b, i, 0]
                xi = psi0[h, b, i, 1]
            x[base + i] = xr
            x[im + base + i] = xi
        for t in range(t_len):
            lr, li = low_phase(cs, t, h, bb, j)
            for k in range(amps):
                fr, fi = phase(cs, t, h, bb, k, lr, li)
                i = base + j + k * tps
                a, c = x[i], x[im + i]
                x[i] = a * fr - c * fi
                x[im + i] = a * fi + c * fr
            for lay in range(big_l):
                for q in range(n):
                    cuda.syncthreads()
                    butterfly(x, base, j, q, uq, (lay * n + q) * 8)
                cuda.syncthreads()
                for k in range(amps):
                    i = j + k * tps
                    er, ei = ee[h, lay, i, 0], ee[h, lay, i, 1]
                    a, c = x[base + i], x[im + base + i]
                    x[base + i] = a * er - c * ei
                    x[im + base + i] = a * ei + c * er
            if every > 0 and (t + 1) % every == 0 and valid:
                s = (t + 1) // every - 1
                for k in range(amps):
                    i = j + k * tps
                    keep[s, h, b, i, 0] = x[base + i]
                    keep[s, h, b, i, 1] = x[im + base + i]
            if read:
                read_forward(x, aa, red, rq, zz, y, t, h, b, base, j, tid, valid)
        if valid:
            for k in range(amps):
                i = j + k * tps
                last[h, b, i, 0] = x[base + i]
                last[h, b, i, 1] = x[im + base + i]

    @cuda.jit(device=True)
    def block_sum(acc, groups, red64, out, blk, tid):
        """out[blk, g, :] = Σ over the block's threads of acc[8g : 8g + 8], g < groups."""
        nt = cuda.blockDim.x
        for g in range(groups):
            for c in range(8):
                red64[c * nt + tid] = acc[g * 8 + c]
            tree(red64, 8, tid, nt)
            if tid == 0:
                for c in range(8):
                    out[blk, g, c] = red64[c * nt]

    @cuda.jit(device=True)
    def bwd_body(x, g, aa, ga, red, red64, uq, rq, last, g_last, g_all, cs, uu, ee, rr, zz, gy,
                 keep, g_psi0, g_alpha, gu, ge, gr, nb, every, flags):
        tid = cuda.threadIdx.x
        blk = cuda.blockIdx.x
        nt = cuda.blockDim.x
        spb = nt // tps
        im = x.shape[0] // 2
        sl, j = tid // tps, tid % tps
        h = blk // nb
        b0 = (blk % nb) * spb
        b = b0 + sl
        valid = b < last.shape[1]
        bb = b if valid else b0
        base = sl * d
        t_len = cs.shape[0]
        has_last = (flags & 1) != 0
        has_all = (flags & 2) != 0
        acc_u = cuda.local.array(nu, float64)
        acc_e = cuda.local.array(ne, float64)
        acc_r = cuda.local.array(nr, float64)
        for c in range(nu):
            acc_u[c] = 0.0
        for c in range(ne):
            acc_e[c] = 0.0
        for c in range(nr):
            acc_r[c] = 0.0
        load_gates(uq, rq, uu, rr, h)
        for k in range(amps):
            i = j + k * tps
            xr = f(0.0)
            xi = f(0.0)
            g0r = f(0.0)
            g0i = f(0.0)
            if valid:
                xr = last[h, b, i, 0]
                xi = last[h, b, i, 1]
                if has_last:
                    g0r = g_last[h, b, i, 0]
                    g0i = g_last[h, b, i, 1]
            x[base + i] = xr
            x[im + base + i] = xi
            g[base + i] = g0r
            g[im + base + i] = g0i
        for t in range(t_len - 1, -1, -1):
            if has_all and valid:
                for k in range(amps):
                    i = j + k * tps
                    g[base + i] += g_all[t, h, b, i, 0]
                    g[im + base + i] += g_all[t, h, b, i, 1]
            if read:
                for kq in range(big_k):  # the readout of ψ_t: its gradient joins G
                    for k in range(amps):
                        i = base + j + k * tps
                        aa[i] = x[i]
                        aa[im + i] = x[im + i]
                    for q in range(n):
                        cuda.syncthreads()
                        butterfly(aa, base, j, q, rq, (kq * n + q) * 8)
                    cuda.syncthreads()
                    for k in range(amps):
                        i = j + k * tps
                        w = f(0.0)
                        for c in range(big_m):
                            w += gy[t, h, bb, kq, c] * zz[i, c]
                        w = f(2.0) * w if valid else f(0.0)  # d|a|²/da = 2a
                        ga[base + i] = w * aa[base + i]
                        ga[im + base + i] = w * aa[im + base + i]
                    for q in range(n - 1, -1, -1):
                        cuda.syncthreads()
                        butterfly_back(aa, ga, base, j, q, rq, (kq * n + q) * 8, acc_r,
                                       (kq * n + q) * 8)
                    cuda.syncthreads()
                    for k in range(amps):
                        i = base + j + k * tps
                        g[i] += ga[i]
                        g[im + i] += ga[im + i]
            for lay in range(big_l - 1, -1, -1):
                cuda.syncthreads()
                for k in range(amps):
                    i = j + k * tps
                    er, ei = ee[h, lay, i, 0], -ee[h, lay, i, 1]  # conj e
                    a, c = x[base + i], x[im + base + i]
                    zr, zi = a * er - c * ei, a * ei + c * er  # the state before the diagonal
                    x[base + i] = zr
                    x[im + base + i] = zi
                    gr_, gi_ = g[base + i], g[im + base + i]
                    acc_e[(lay * amps + k) * 2] += gr_ * zr + gi_ * zi  # g · conj(z)
                    acc_e[(lay * amps + k) * 2 + 1] += gi_ * zr - gr_ * zi
                    g[base + i] = gr_ * er - gi_ * ei
                    g[im + base + i] = gr_ * ei + gi_ * er
                for q in range(n - 1, -1, -1):
                    cuda.syncthreads()
                    butterfly_back(x, g, base, j, q, uq, (lay * n + q) * 8, acc_u,
                                   (lay * n + q) * 8)
            cuda.syncthreads()
            # input phases: x = ψ_{t-1} ⊙ f_t; dL/dα[q, b] = Σ_{bit_q(i) = b} Im(g_i conj x_i)
            for r in range(n + 1):
                red[r * nt + tid] = 0.0
            for k in range(amps):
                i = base + j + k * tps
                v = g[im + i] * x[i] - g[i] * x[im + i]
                red[n * nt + tid] += v
                for q in range(logt, n):
                    if (k >> (q - logt)) & 1:
                        red[q * nt + tid] += v
            for q in range(logt):
                if (j >> q) & 1:
                    red[q * nt + tid] = red[n * nt + tid]
            tree(red, n + 1, tid, tps)
            if j == 0 and valid:
                for q in range(n):
                    g_alpha[t, h, b, q, 1] = red[q * nt + tid]
                    g_alpha[t, h, b, q, 0] = red[n * nt + tid] - red[q * nt + tid]
            lr, li = low_phase(cs, t, h, bb, j)
            for k in range(amps):
                fr, fi = phase(cs, t, h, bb, k, lr, li)
                i = base + j + k * tps
                a, c = x[i], x[im + i]
                x[i] = a * fr + c * fi  # ⊙ conj f
                x[im + i] = c * fr - a * fi
                a, c = g[i], g[im + i]
                g[i] = a * fr + c * fi
                g[im + i] = c * fr - a * fi
            if every > 0 and t % every == 0 and t > 0 and valid:
                s = t // every - 1  # the stored ψ_{t-1}: restart exactly
                for k in range(amps):
                    i = j + k * tps
                    x[base + i] = keep[s, h, b, i, 0]
                    x[im + base + i] = keep[s, h, b, i, 1]
        if valid:
            for k in range(amps):
                i = j + k * tps
                g_psi0[h, b, i, 0] = g[base + i]
                g_psi0[h, b, i, 1] = g[im + base + i]
        for s2 in range(spb):  # dL/de: the block's samples one after another (no atomics)
            cuda.syncthreads()
            if sl == s2:
                for lay in range(big_l):
                    for k in range(amps):
                        i = j + k * tps
                        ge[blk, lay, i, 0] += acc_e[(lay * amps + k) * 2]
                        ge[blk, lay, i, 1] += acc_e[(lay * amps + k) * 2 + 1]
        block_sum(acc_u, big_l * n, red64, gu, blk, tid)
        if read:
            block_sum(acc_r, big_k * n, red64, gr, blk, tid)

    @cuda.jit
    def forward(psi0, cs, uu, ee, rr, zz, keep, last, y, nb, every, work):
        nt = cuda.blockDim.x
        ls = 2 * (nt // tps) * d  # one state array: Re and Im of the block's samples
        buf = cuda.shared.array(0, f)  # dynamic shared memory, carved as ``shared_bytes`` counts
        if shared:
            x = buf[0:ls]
            aa = buf[ls:2 * ls] if read else x
            o = (2 if read else 1) * ls
        else:
            blk = cuda.blockIdx.x
            x = work[blk, 0]
            aa = work[blk, 1] if read else x
            o = 0
        fwd_body(x, aa, buf[o:o + rows * nt], buf[o + rows * nt:o + rows * nt + nu],
                 buf[o + rows * nt + nu:o + rows * nt + nu + nr], psi0, cs, uu, ee, rr, zz, keep,
                 last, y, nb, every)

    @cuda.jit
    def backward(last, g_last, g_all, cs, uu, ee, rr, zz, gy, keep, g_psi0, g_alpha, gu, ge, gr,
                 nb, every, flags, work):
        nt = cuda.blockDim.x
        ls = 2 * (nt // tps) * d
        buf = cuda.shared.array(0, f)
        buf64 = cuda.shared.array(0, float64)
        if shared:
            x = buf[0:ls]
            g = buf[ls:2 * ls]
            aa = buf[2 * ls:3 * ls] if read else x
            ga = buf[3 * ls:4 * ls] if read else g
            o = (4 if read else 2) * ls
        else:
            blk = cuda.blockIdx.x
            x = work[blk, 0]
            g = work[blk, 1]
            aa = work[blk, 2] if read else x
            ga = work[blk, 3] if read else g
            o = 0
        o64 = ((o + rows * nt + nu + nr) * real_bytes + 7) // 8  # float64 units, 8-byte aligned
        bwd_body(x, g, aa, ga, buf[o:o + rows * nt], buf64[o64:o64 + 8 * nt],
                 buf[o + rows * nt:o + rows * nt + nu],
                 buf[o + rows * nt + nu:o + rows * nt + nu + nr], last, g_last, g_all, cs, uu, ee,
                 rr, zz, gy, keep, g_psi0, g_alpha, gu, ge, gr, nb, every, flags)

    return forward, backward


def shared_bytes(n: int, layers: int, queries: int, terms: int, tps: int, spb: int,
                 double: bool, shared: bool, backward: bool = True) -> int:
    """Dynamic shared memory a block of ``build(...)``'s forward or backward kernel needs, as the
    kernel carves it: the state arrays (x; g backward; aa, ga with the readout) when ``shared``,
    the reduction rows, the gates, and (backward) the float64 rows of the block sums."""
    real = 8 if double else 4
    nt, ls = tps * spb, 2 * spb * (1 << n)
    arrays = (2 if backward else 1) * (2 if queries else 1)
    reals = (arrays * ls if shared else 0) + max(n + 1, terms, 1) * nt \
        + max(1, layers * n * 8) + max(1, queries * n * 8)
    if not backward:
        return reals * real
    return 8 * ((reals * real + 7) // 8 + 8 * nt)
