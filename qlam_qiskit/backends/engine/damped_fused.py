"""The damped memories' per-token scan as generated straight-line code, one CPU kernel per shape.

The recurrence is ``selective.rz_damped_scan_ref``'s, per memory h, sample b and token t:

    r_t = A(ρ_t) · R_h · Rz(δ_t) · [Ry(a_t)] · r_{t-1}        (Pauli vectors of N = 4^n reals)

``selective.py``'s numba kernel runs it a BLAS call (N, N) @ (N, B) per token and memory; at the
preset's size (n = 2, N = 16) the call overhead and the loops over index tables cost about 10× the
arithmetic. Here ``_generate`` writes one token's update for VEC lanes as straight-line LLVM IR
(the ``_Token`` emitter of ``fused_readout.py``): the N values of a lane block stay in registers
through the input block, the mat-vec (R's N² entries broadcast from the task's scratch row) and
the damping. Backward walks the tokens in reverse from the stored states: per token it rebuilds
a_t = Rz Ry r_{t-1}, takes the rates' gradient from r_t itself (∂A/∂ρ = D A for a fixed D, so
u_t = R a_t is never rebuilt), pulls the gradient back through A, R and the input block,
writes the angles' and rates' gradients and adds g_u a_tᵀ to R's gradient in the scratch buffer
(one VEC-wide sum per entry: 8 KB at n = 2; writing g_u and a_t out for one batched GEMM after
the walk was slower, 50 MB more traffic). Read by a linear map (``damped_read``, what the layer
calls), the walk also forms the states' gradient W_h dL/dy itself, so no (H, N, T, B) gradient
exists. Determinism as in ``fused_readout``: no fast-math, explicit ``llvm.fma``, every sum in a
fixed order.

Layouts (T·B minor, the GEMMs' layouts): the per-token inputs stacked, z (k, H, n, T, B) (δ,
rates or log-rates, RY angles: one GEMM makes them, one takes their gradient back); the kernel's
packed inputs (C, H, n, T, B) with channels cos δ, sin δ, e^{-ρ/2}, e^{-ρ}, 1 - e^{-ρ}[, cos a,
sin a] (``selective.COS`` …); states (H, N, T, B); a read y (T, B, d_out), whose gradient the
backward walk reads as (T, d_out, B), one block per token. VEC is 16 float32 lanes where the CPU
has AVX-512, else 8 (``fused_readout.vector_bits``)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .fused_readout import LANES, _Token, numba
from .kernels import match_threads
from .selective import COS, G, K, RY, S, SIN, damping_pairs, ry_pairs, rz_damped_scan_ref
from .transfer import rotation_pairs

if numba is not None:
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.extending import intrinsic

    from .fused_readout import _data, jit, vector_bits

Tensor = torch.Tensor
AHEAD = 2
"""Tokens ahead (lower in memory) whose rows the backward walk prefetches."""
MAX_QUBITS = 2
"""Widest memory the code is generated for: its mat-vec is N² = 16^n multiply-adds of straight
code, which LLVM compiles in 0.25 s at n = 2 and 25 s at n = 3 (measured); wider memories take
``selective.py``'s kernel, whose BLAS call per token costs less against a 64 × 64 mat-vec."""


def supports(num_qubits: int) -> bool:
    """Whether this kernel runs a damped memory of ``num_qubits`` qubits."""
    return numba is not None and 1 <= num_qubits <= MAX_QUBITS


class _Emitter(_Token):
    """``_Token`` with the addressing of the packed channels: row (c, q) of a head's view lies
    at start + c·stride_c + q·stride."""

    def _ch(self, base, start, stride, stride_c, c: int, q: int):
        i64 = ir.IntType(64)
        off = self.b.add(self.b.add(start, self.b.mul(stride_c, ir.Constant(i64, c))),
                         self.b.mul(stride, ir.Constant(i64, q)))
        return self._ptr(base, off)

    def load_ch(self, base, start, stride, stride_c, c: int, q: int):
        return self.b.load(self._ch(base, start, stride, stride_c, c, q), align=4)

    def store_ch(self, base, start, stride, stride_c, c: int, q: int, v) -> None:
        self.b.store(v, self._ch(base, start, stride, stride_c, c, q), align=4)


def _generate(n: int, ry: bool, double: bool, d_out: int = 0, bits: int = 256) -> ir.Module:
    """IR of one token (``forward``, ``backward``) for VEC = bits / (32 or 64) lanes. Both take
    (buf, p, x, xt, gout, gp, o, s, s_x, stride_x, stride, stride_c, ahead, s_g, stride_g,
    ahead_g): the scratch buffer (rows at lane offset o: the state forward, its gradient backward;
    then R row-major; then backward R's gradient sums), the packed channels p and their gradients
    gp at (s, stride, stride_c), the state before the token x at (s_x, stride_x) backward
    (forward: the states' output at (s, stride)), backward the state after it xt at (s, stride),
    the readout gradient gout at (s_g, stride_g), and backward the prefetch distances ``ahead``
    and ``ahead_g`` (gout's). With ``d_out`` the memories are read by a linear map W (H·N, d_out)
    whose rows for this head follow R in the scratch buffer: gout is then dL/dy (T, d_out, B) of
    y = Wᵀ r, one contiguous block per token (read by rows d_out·T·B apart, it cost the walk a
    third of its time), and dL/dr = W_h dL/dy is formed here, so the (H, N, T, B) gradient is
    never written."""
    d = 4**n
    rot, zx, zp = rotation_pairs(n), ry_pairs(n), damping_pairs(n)
    real = ir.DoubleType() if double else ir.FloatType()
    vec = bits // (64 if double else 32)
    i64, ptr = ir.IntType(64), real.as_pointer()
    module = ir.Module(name=f"qlam_damped_n{n}{'_ry' if ry else ''}_out{d_out}")
    vty = ir.VectorType(real, vec)
    fma = ir.Function(module, ir.FunctionType(vty, [vty] * 3),
                      f"llvm.fma.v{vec}f{64 if double else 32}")
    half = ir.Constant(vty, [ir.Constant(real, 0.5)] * vec)

    prefetch = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr] + [ir.IntType(32)] * 3),
                           "llvm.prefetch.p0")

    def function(name):
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr] * 6 + [i64] * 10), name)
        for arg in fn.args[:6]:
            arg.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        e = _Emitter(b, fn.args[0], real, vec, d * LANES, fma)
        e.off = fn.args[6]
        return fn.args[1:6], fn.args[7:12], e, b.ret_void, fn.args[12:]

    kinds = (COS, SIN, S, K, G) + ((RY, RY + 1) if ry else ())  # the packed channels

    def channels(e, p, s, stride, stride_c):
        return {c: [e.load_ch(p, s, stride, stride_c, c, q) for q in range(n)] for c in kinds}

    def input_block(e, a, ch):
        """a = Rz(δ) [Ry(a)] a: per qubit, RY on its (Z, X) pairs, then RZ on its (X, Y) pairs."""
        a = list(a)
        for q in range(n):
            cb, sb = ch[COS][q], ch[SIN][q]
            for i in range(rot.shape[1]):
                ix, iy = rot[q, i]
                x, y = a[ix], a[iy]
                if ry:
                    iz, ca, sa = zx[q, i, 0], ch[RY][q], ch[RY + 1][q]
                    z = a[iz]
                    x = e.lin([(1, sa, z), (1, ca, x)])  # RY on (z, x)
                    a[iz] = e.lin([(1, ca, z), (-1, sa, a[ix])])
                a[ix] = e.lin([(1, cb, x), (-1, sb, y)])
                a[iy] = e.lin([(1, sb, x), (1, cb, y)])
        return a

    def matvec(e, v, transpose=False):
        """R v (or Rᵀ v): output i = Σ_j R[i, j] v_j, left to right."""
        ix = (lambda i, j: j * d + i) if transpose else (lambda i, j: i * d + j)  # noqa: E731
        return [e.lin([(1, e.coef(ix(i, j)), v[j]) for j in range(d)]) for i in range(d)]

    # forward: r ← A(ρ) R Rz(δ) [Ry(a)] r; the new state to the scratch rows and to x at s
    (p, x_out, _, _, _), (s, _, _, stride, stride_c), e, close, _ = function("forward")
    ch = channels(e, p, s, stride, stride_c)
    r = matvec(e, input_block(e, [e.load(i) for i in range(d)], ch))
    for q in range(n):  # damping per qubit: X, Y -> e^{-ρ/2} ·, Z -> e^{-ρ} Z + (1 - e^{-ρ}) I
        for i in range(rot.shape[1]):
            ix, iy = rot[q, i]
            iz, ii = zp[q, i]
            r[ix], r[iy] = e.mul(r[ix], ch[S][q]), e.mul(r[iy], ch[S][q])
            r[iz] = e.lin([(1, ch[K][q], r[iz]), (1, ch[G][q], r[ii])])
    for i in range(d):
        e.store(i, r[i])
        e.store_io(x_out, s, stride, i, r[i])
    close()

    # backward: on entry the scratch rows hold dL/dr_t from later tokens; on exit dL/dr_{t-1}
    (p, x_prev, x_t, gout, gp), (s, s_x, stride_x, stride, stride_c), e, close, \
        (ahead, s_g, stride_g, ahead_g) = function("backward")
    # the walk runs to lower addresses, which the hardware prefetchers follow poorly: prefetching
    # every row it reads ``ahead`` elements back made it 1.7x faster (20.4 -> 12.2 ms, preset)
    hint = [ir.Constant(ir.IntType(32), v) for v in (0, 3, 1)]  # read, keep in cache, data
    fetch = lambda vp: e.b.call(prefetch, [e.b.bitcast(vp, ptr)] + hint)  # noqa: E731
    for i in range(d):
        fetch(e._io(x_prev, e.b.add(s_x, ahead), stride_x, i))
    for i in range(d_out or d):
        fetch(e._io(gout, e.b.add(s_g, ahead_g), stride_g, i))
    for c in kinds:
        for q in range(n):
            fetch(e._ch(p, e.b.add(s, ahead), stride, stride_c, c, q))
    ch = channels(e, p, s, stride, stride_c)
    a = input_block(e, [e.load_io(x_prev, s_x, stride_x, i) for i in range(d)], ch)
    if d_out:  # dL/dr_t = later tokens' + W_h dL/dy_t
        gy = [e.load_io(gout, s_g, stride_g, k) for k in range(d_out)]
        g = [e.lin([(1, e.coef(d * d + i * d_out + k), gy[k]) for k in range(d_out)], e.load(i))
             for i in range(d)]
    else:  # dL/dr_t = later tokens' + the readout's
        g = [e.add(e.load(i), e.load_io(gout, s_g, stride_g, i)) for i in range(d)]
    r = [e.load_io(x_t, s, stride, i) for i in range(d)]  # r_t, read as the last token's x_prev
    for q in range(n):  # dL/dρ_q = g_r · D_q r_t, D_q: (I, X, Y, Z)_q -> (0, -x/2, -y/2, i - z)
        terms, xy = [], []  # (∂A/∂ρ_q = D_q A, so no u_t = R a_t is needed)
        for i in range(rot.shape[1]):
            ix, iy = rot[q, i]
            iz, ii = zp[q, i]
            terms.append((1, g[iz], e.sub(r[ii], r[iz])))
            xy += [(1, g[ix], r[ix]), (1, g[iy], r[iy])]
        e.store_ch(gp, s, stride, stride_c, 1, q, e.sub(e.lin(terms), e.mul(e.lin(xy), half)))
    for q in range(n):  # dL/du = A(ρ)ᵀ dL/dr_t
        for i in range(rot.shape[1]):
            ix, iy = rot[q, i]
            iz, ii = zp[q, i]
            g[ii] = e.lin([(1, ch[G][q], g[iz])], g[ii])
            g[iz] = e.mul(g[iz], ch[K][q])
            g[ix], g[iy] = e.mul(g[ix], ch[S][q]), e.mul(g[iy], ch[S][q])
    acc0 = d * LANES + d * d + d * d_out  # after rows, R, W_h: dL/dR += g_u a_tᵀ, VEC wide (all
    # calls of a task add into the same VEC lanes: 8 KB at n = 2 where LANES wide took 32 KB)
    for i in range(d):
        for j in range(d):
            ptr_ = e.b.bitcast(e.b.gep(e.buf, [ir.Constant(i64, acc0 + (i * d + j) * vec)]),
                               vty.as_pointer())
            e.b.store(e.lin([(1, g[i], a[j])], e.b.load(ptr_, align=4)), ptr_, align=4)
    ga = matvec(e, g, transpose=True)  # dL/da_t = Rᵀ g_u
    a = list(a)
    for q in range(n):  # back through the input block, qubit by qubit, with the angles' gradients
        cb, sb = ch[COS][q], ch[SIN][q]
        gb, ga_q = [], []
        for i in range(rot.shape[1]):
            ix, iy = rot[q, i]
            vx, vy, ax, ay = ga[ix], ga[iy], a[ix], a[iy]
            gb += [(1, vy, ax), (-1, vx, ay)]  # d/dδ (x, y) = (-y, x)
            x1 = e.lin([(1, cb, ax), (1, sb, ay)])  # Rz(-δ): back to after the RY
            y1 = e.lin([(1, cb, ay), (-1, sb, ax)])
            gx1 = e.lin([(1, cb, vx), (1, sb, vy)])
            gy1 = e.lin([(1, cb, vy), (-1, sb, vx)])
            if ry:
                iz, ca, sa = zx[q, i, 0], ch[RY][q], ch[RY + 1][q]
                vz, az = ga[iz], a[iz]
                ga_q += [(1, gx1, az), (-1, vz, x1)]  # d/da (z, x) = (-x, z)
                a[ix], a[iz] = e.lin([(1, ca, x1), (-1, sa, az)]), e.lin([(1, ca, az), (1, sa, x1)])
                ga[ix] = e.lin([(1, ca, gx1), (-1, sa, vz)])
                ga[iz] = e.lin([(1, ca, vz), (1, sa, gx1)])
            else:
                a[ix], ga[ix] = x1, gx1
            a[iy], ga[iy] = y1, gy1
        e.store_ch(gp, s, stride, stride_c, 0, q, e.lin(gb))
        if ry:
            e.store_ch(gp, s, stride, stride_c, 2, q, e.lin(ga_q))
    for i in range(d):
        e.store(i, ga[i])
    close()
    return module


@lru_cache(maxsize=None)
def _compiled(n: int, ry: bool, double: bool, d_out: int = 0,
              bits: int = 256) -> tuple[int, int, int]:
    """Addresses of the compiled token functions (forward, backward) and the lanes per vector."""
    address = jit(_generate(n, ry, double, d_out, bits))
    return address("forward"), address("backward"), bits // (64 if double else 32)


if numba is not None:

    @intrinsic
    def _call(typingctx, fn, buf, p, x, xt, gout, gp, o, s, s_x, stride_x, stride, stride_c,
              ahead, s_g, stride_g, ahead_g):
        """Call the compiled token function at address fn (``_generate``'s signature)."""
        sig = types.void(types.intp, buf, p, x, xt, gout, gp, *[types.intp] * 10)

        def codegen(context, builder, signature, args):
            ptrs = [_data(context, builder, t, v) for t, v in zip(signature.args[1:7], args[1:7])]
            fnty = ir.FunctionType(ir.VoidType(), [q.type for q in ptrs] + [ir.IntType(64)] * 10)
            builder.call(builder.inttoptr(args[0], fnty.as_pointer()), ptrs + list(args[7:]))
            return context.get_dummy_value()

        return sig, codegen

    @njit(parallel=True, cache=True)
    def _forward(fn, vec, r0, p, coef, out):  # pragma: no cover - compiled
        """r0 (N,), packed channels p (C, H, n, T, B), R per head coef (H, N·N) -> states into
        out (H, N, T, B); B is a multiple of LANES."""
        n_head, n_d, n_t, n_b = out.shape
        n_blk = n_b // LANES
        stride, stride_c = n_t * n_b, p.shape[1] * p.shape[2] * n_t * n_b
        for task in prange(n_head * n_blk):
            h, b0 = task // n_blk, (task % n_blk) * LANES
            buf = np.empty(n_d * LANES + coef.shape[1], dtype=out.dtype)
            buf[n_d * LANES:] = coef[h]
            for i in range(n_d):
                buf[i * LANES:(i + 1) * LANES] = r0[i]
            ph, oh = p[:, h], out[h]
            for t in range(n_t):
                for o in range(0, LANES, vec):
                    s = t * n_b + b0 + o
                    _call(fn, buf, ph, oh, oh, oh, ph, o, s, s, stride, stride, stride_c, 0, 0, 0,
                          0)

    @njit(parallel=True, cache=True)
    def _backward(fn, vec, r0x, p, coef, states, g_out, gp, g_m,
                  read):  # pragma: no cover - compiled
        """Reverse walk of ``_forward``: r0x (N·LANES,) the start state on every lane, states
        (H, N, T, B) and dL/dstates g_out (H, N, T, B), or with ``read`` (the coefficients hold
        a readout map) dL/dy (1, T, d_out, B), a block per token -> the channels' gradients into
        gp (C', H, n, T, B) (δ, ρ [, a]) and per task dL/dR into g_m (tasks, N·N): float32 sums
        of at most 32 tokens in the scratch buffer, added into float64 in a fixed order."""
        n_head, n_d, n_t, n_b = states.shape
        n_blk = n_b // LANES
        stride, stride_c = n_t * n_b, p.shape[1] * p.shape[2] * n_t * n_b
        step_g, stride_g = (g_out.shape[2] * n_b, n_b) if read else (n_b, stride)
        for task in prange(n_head * n_blk):
            h, b0 = task // n_blk, (task % n_blk) * LANES
            n_acc = n_d * n_d * vec
            acc0 = n_d * LANES + coef.shape[1]
            buf = np.zeros(acc0 + n_acc, dtype=states.dtype)
            buf[n_d * LANES:acc0] = coef[h]
            total = np.zeros(n_acc)  # float64 sums of the float32 partial sums
            ph, sh, gh, gph = p[:, h], states[h], g_out[h % g_out.shape[0]], gp[:, h]
            for t in range(n_t - 1, 0, -1):
                if t % 32 == 0:
                    for a in range(n_acc):
                        total[a] += buf[acc0 + a]
                        buf[acc0 + a] = 0.0
                ahead = -min(t - 1, AHEAD)  # the rows AHEAD tokens on
                for o in range(0, LANES, vec):
                    s = t * n_b + b0 + o
                    _call(fn, buf, ph, sh, sh, gh, gph, o, s, s - n_b, stride, stride, stride_c,
                          ahead * n_b, t * step_g + b0 + o, stride_g, ahead * step_g)
            for o in range(0, LANES, vec):  # the first token: the state before it is r0
                _call(fn, buf, ph, r0x, sh, gh, gph, o, b0 + o, o, LANES, stride, stride_c, 0,
                      b0 + o, stride_g, 0)
            for a in range(n_acc):
                total[a] += buf[acc0 + a]
            for j in range(n_d * n_d):
                v = 0.0
                for l in range(vec):
                    v += total[j * vec + l]
                g_m[task, j] = v


def pack(z: Tensor, rate: Tensor | None, ry: bool, log_rates: bool,
         dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The kernel's inputs from the stacked per-token inputs z (k, H, n, T, B), rows δ, then the
    rates (ρ, or ℓ = log ρ with ``log_rates``) unless ``rate`` (H, n, 1, 1) gives them
    broadcast, then the RY angles a if ``ry``: channels (C, H, n, T, B) cos δ, sin δ, e^{-ρ/2},
    e^{-ρ}, 1 - e^{-ρ}[, cos a, sin a], and ρ."""
    z = z.detach().to(dtype)
    shape = z.shape[1:]
    p = torch.empty((7 if ry else 5,) + shape, dtype=dtype)
    if rate is None:
        rho = torch.exp(z[1]) if log_rates else z[1]
    else:
        rho = rate.detach().to(dtype).expand(shape)
    neg = rho.neg()
    torch.cos(z[0], out=p[COS])
    torch.sin(z[0], out=p[SIN])
    torch.exp(neg * 0.5, out=p[S])
    torch.mul(p[S], p[S], out=p[K])
    torch.expm1(neg, out=p[G]).neg_()
    if ry:
        torch.cos(z[-1], out=p[RY])
        torch.sin(z[-1], out=p[RY + 1])
    return p, rho


class _Damped(torch.autograd.Function):
    """The kernel on stacked per-token inputs z (``pack``): the states (H, N, T, B), or with a
    readout map w (H·N, d_out) and bias (d_out,) y = bias + wᵀ r as (T, B, d_out), whose gradient
    the backward walk maps to the states itself. z's gradient comes out stacked as z is: with
    per-token rates it is the kernel's own array (g_δ, g_ρ or g_ℓ, g_a), no copy."""

    @staticmethod
    def forward(ctx, r0: Tensor, z: Tensor, rate: Tensor | None, m: Tensor, w: Tensor | None,
                bias: Tensor | None, ry: bool, log_rates: bool) -> Tensor:
        match_threads()
        dtype, n = m.dtype, z.shape[2]
        d_out = 0 if w is None else w.shape[1]
        fw, bw, vec = _compiled(n, ry, dtype == torch.float64, d_out, vector_bits())
        p, rho = pack(z, rate, ry, log_rates, dtype)  # (C, H, n, T, B)
        _, h, _, t, b = p.shape
        out = torch.empty(h, m.shape[-1], t, b, dtype=dtype)  # (H, N, T, B)
        coef = m.detach().reshape(h, -1)  # R per head, then W_h (N, d_out) with a readout
        if w is not None:
            coef = torch.cat([coef, w.detach().to(dtype).reshape(h, -1)], 1)
        coef = coef.contiguous()
        _forward(fw, vec, r0.detach().to(dtype).contiguous().numpy(), p.numpy(), coef.numpy(),
                 out.numpy())
        ctx.bw, ctx.vec, ctx.ry, ctx.rate_shape = bw, vec, ry, None if rate is None else rate.shape
        ctx.save_for_backward(r0, p, coef, out, rho if rate is None and log_rates else None)
        if w is None:
            return out
        y = torch.addmm(bias.detach().to(dtype), out.view(-1, t * b).T,
                        w.detach().to(dtype))  # (T·B, d_out): faster than (d_out, T·B) here
        return y.view(t, b, d_out)  # and no transpose for the residual stream

    @staticmethod
    def backward(ctx, g_out: Tensor):
        r0, p, coef, states, rho = ctx.saved_tensors
        _, h, n, t, b = p.shape
        d = states.shape[1]
        read = coef.shape[1] > d * d
        g = g_out.to(states.dtype)  # (H, N, T, B), or dL/dy (T, B, d_out) with a readout
        gk = g.transpose(1, 2).contiguous() if read else g.contiguous()  # (T, d_out, B) or rows
        gp = torch.empty(3 if ctx.ry else 2, h, n, t, b, dtype=states.dtype)  # g_δ, g_ρ[, g_a]
        g_m = torch.empty(h * (b // LANES), d * d, dtype=torch.float64)  # dL/dR per task
        r0x = r0.to(states.dtype).repeat_interleave(LANES).contiguous()
        _backward(ctx.bw, ctx.vec, r0x.numpy(), p.numpy(), coef.numpy(), states.numpy(),
                  (gk[None] if read else gk).numpy(), gp.numpy(), g_m.numpy(), read)
        g_m = g_m.view(h, -1, d, d).sum(1).to(states.dtype)  # Σ_t g_u a_tᵀ (H, N, N)
        g_rate = None
        if ctx.rate_shape is not None:  # broadcast rates: their gradient summed, z without them
            g_rate = gp[1].sum_to_size(ctx.rate_shape)
            gp = gp[::2] if ctx.ry else gp[:1]
        elif rho is not None:  # ℓ = log ρ: dL/dℓ = ρ dL/dρ
            gp[1].mul_(rho)
        g_w = g_bias = None
        if read:  # y = bias + rᵀ w: dL/dw = r dL/dy, one GEMM over the T·B tokens
            g2 = g.reshape(t * b, -1)  # (T·B, d_out)
            g_w, g_bias = states.view(h * d, t * b) @ g2, g2.sum(0)
        return None, gp, g_rate, g_m, g_w, g_bias, None, None


def _pad(z: Tensor) -> Tensor:
    """z (k, H, n, T, B) padded to whole tasks of LANES samples (zero inputs, dropped after)."""
    from torch.nn.functional import pad
    if not supports(z.shape[2]):
        raise ValueError(f"the generated damped kernel runs memories of 1 to {MAX_QUBITS} qubits "
                         f"with numba; got {z.shape[2]} qubits")
    extra = -z.shape[-1] % LANES
    return (pad(z, (0, extra)) if extra else z).contiguous()


def damped_read(r0: Tensor, z: Tensor, m: Tensor, w: Tensor, bias: Tensor, *, ry: bool,
                rate: Tensor | None = None) -> Tensor:
    """The damped memories read by a linear map, from stacked inputs: z (k, H, n, T, B) holds the
    RZ angles δ, then the log-rates ℓ = log ρ unless ``rate`` (H, n, 1, 1) gives the rates
    broadcast, then the RY angles if ``ry``; R (H, N, N), w (H·N, d_out), bias (d_out,) ->
    y = bias + wᵀ r (T, B, d_out). What the layer calls: its input maps are one GEMM into z, and
    z's gradient comes back as one array, so one GEMM takes it back (``damped_read_lanes`` is
    the same on separate inputs)."""
    b = z.shape[-1]
    return _Damped.apply(r0, _pad(z), rate, m.contiguous(), w, bias, ry, True)[:, :b]


def _stacked(rz: Tensor, rate: Tensor, ry: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Separate inputs (H, n, T, B) -> z for ``_Damped`` (rates as ρ) and the broadcast rate."""
    per_token = rate.shape[-2:] != (1, 1) or rz.shape[-2:] == (1, 1)
    rows = [rz] + ([rate.expand_as(rz)] if per_token else []) + ([ry] if ry is not None else [])
    return torch.stack(rows), None if per_token else rate


def damped_scan_lanes(r0: Tensor, rz: Tensor, rate: Tensor, m: Tensor,
                      ry: Tensor | None = None) -> Tensor:
    """States (H, N, T, B) of the damped memories: r0 (N,), RZ angles δ (H, n, T, B), rates ρ
    (H, n, T, B) or (H, n, 1, 1) broadcast, mixing PTM R (H, N, N) real, optional RY angles (H,
    n, T, B). Differentiable in δ, ρ, R and the RY angles; ``selective.rz_damped_scan_ref`` is
    the same recurrence in plain autograd (in (T, B, H, ·) layouts)."""
    z, rate_b = _stacked(rz, rate, ry)
    b = rz.shape[-1]
    return _Damped.apply(r0, _pad(z), rate_b, m.contiguous(), None, None, ry is not None,
                         False)[..., :b]


def damped_read_lanes(r0: Tensor, rz: Tensor, rate: Tensor, m: Tensor, ry: Tensor | None,
                      w: Tensor, bias: Tensor) -> Tensor:
    """``damped_scan_lanes`` read by a linear map: y = bias + wᵀ r (T, B, d_out) for w (H·N,
    d_out), bias (d_out,). The same as the GEMM on ``damped_scan_lanes``'s states, but the
    backward walk forms the states' gradient from dL/dy itself: the (H, N, T, B) gradient (25 MB
    at the preset's size) is neither computed by a GEMM nor read back."""
    z, rate_b = _stacked(rz, rate, ry)
    b = rz.shape[-1]
    return _Damped.apply(r0, _pad(z), rate_b, m.contiguous(), w, bias, ry is not None,
                         False)[:, :b]


def damped_scan_lanes_ref(r0: Tensor, rz: Tensor, rate: Tensor, m: Tensor,
                          ry: Tensor | None = None) -> Tensor:
    """Reference of ``damped_scan_lanes`` in plain autograd: the same arguments and states (H, N,
    T, B), through ``selective.rz_damped_scan_ref`` in its (T, B, H, ·) layouts."""
    tb = lambda v: None if v is None else v.expand_as(rz).permute(2, 3, 0, 1)  # noqa: E731
    return rz_damped_scan_ref(r0, tb(rz), tb(rate), m, tb(ry)).permute(2, 3, 0, 1)


def damped_read_lanes_ref(r0: Tensor, rz: Tensor, rate: Tensor, m: Tensor, ry: Tensor | None,
                          w: Tensor, bias: Tensor) -> Tensor:
    """Reference of ``damped_read_lanes``: the reference states, then the map."""
    r = damped_scan_lanes_ref(r0, rz, rate, m, ry)  # (H, N, T, B)
    w = w.view(r.shape[0], r.shape[1], -1)  # (H, N, d_out)
    return torch.einsum("hntb,hno->tbo", r, w) + bias


def damped_read_ref(r0: Tensor, z: Tensor, m: Tensor, w: Tensor, bias: Tensor, *, ry: bool,
                    rate: Tensor | None = None) -> Tensor:
    """Reference of ``damped_read``: z's rows unstacked (log-rates exponentiated), then
    ``damped_read_lanes_ref``."""
    rho = torch.exp(z[1]) if rate is None else rate
    return damped_read_lanes_ref(r0, z[0], rho, m, z[-1] if ry else None, w, bias)
