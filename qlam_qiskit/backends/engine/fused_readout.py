"""The learned-basis readout fused into the product-form scan: one CPU kernel per cell shape.

Per token and memory the kernel multiplies in the input phases, applies the mixing layers of the
product form (``product.py``) and reads the state while it is in cache. The readout uses that each
query rotates every qubit separately, so its Z terms are Pauli moments of the unrotated state:
⟨ψ|R†Z_S R|ψ⟩ = ⟨ψ|⊗_{q∈S} (n_q·σ_q)|ψ⟩ with n_q the Bloch axis of R_q†ZR_q (R unitary, as the
queries' gates make it). The kernel computes ⟨σ_α⟩ of each read qubit and ⟨σ_α σ_β⟩ of each read
pair once per token, and every query's terms are short contractions of them with per-head axis
products. Only readouts leave the kernel: nothing of size T·B·H·2^n is materialised. Backward
walks back by the inverse (unitary) updates, restarting from every ``anchor_every``-th stored
state, adds each token's readout gradient (2 Σ_P g_P P ψ) to the state gradient as it passes, and
sums the gradients of the mixing unitaries, the diagonals and the axis products per lane.

The input phases come in relative form, δ_q = α[q, 1] - α[q, 0] (the phase of |1⟩ against |0⟩ on
qubit q): the dropped Σ_q α[q, 0] is a global phase per token, which no readout sees.

How: for a cell shape (qubits, mixing layers, Z terms, queries, precision) ``_generate`` writes the
token update as straight-line LLVM IR on SIMD vectors of VEC lanes (``vector_bits``: 16 float32
lanes with AVX-512, else 8; llvmlite, which numba ships): no loop per gate or amplitude, per-head
coefficients broadcast where used, inputs and readouts loaded and stored in place in the torch
tensors. Three functions: ``forward``; ``read_back`` and ``mix_back``, which walk one token back
(split so that fewer values are live at once). They compile in about a second, once per process and
shape. A numba ``prange`` driver (compiled once, cached on disk) runs the tasks, one head and
``LANES`` samples each, calling them token by token. Layouts are time-and-batch minor, those of a
GEMM over (T·B) columns: phases δ (H, n, T, B), readouts (H, K, M, T, B). Determinism: no fast-math
flags, every sum in a fixed order, multiply-adds as explicit ``llvm.fma`` (one IEEE rounding, not
left to the compiler), task sums reduced in a fixed order: the same bits on every run, at any
thread count. ``product.product_readout_ref`` is the same function in plain autograd.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.nn.functional import pad as nn_pad

from .kernels import match_threads

try:
    import llvmlite.binding as llvm
    import numba
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - numba is a dependency; this keeps import errors readable
    numba = None

Tensor = torch.Tensor
LANES = 32
"""Samples one task runs side by side (rows of its scratch buffer); a ragged batch pads the last
task with zero lanes, which stay zero."""
ANCHOR_EVERY = 32
"""Keep every 32nd state (T/32 of them) so the backward walk restarts exactly there: round-off
drift of the adjoint walk stays bounded over any T."""
MAX_QUBITS = 6
"""Widest memory the kernel is generated for (its code grows as n·2^n); wider memories take the
unfused path."""
PAULIS = "XYZ"


def available() -> bool:
    """Whether the fused readout kernel can run (numba and llvmlite importable)."""
    return numba is not None


def supports(num_qubits: int, terms: tuple[tuple[int, ...], ...]) -> bool:
    """Whether the kernel reads this memory: at most ``MAX_QUBITS`` qubits, Z terms of one or two
    qubits (what ``circuits.readout.readout_terms`` makes)."""
    return available() and num_qubits <= MAX_QUBITS and all(len(s) in (1, 2) for s in terms)


# ---------------------------------------------------------------------------------------------
# Pauli moments of the Z terms


def moments(terms: tuple[tuple[int, ...], ...]) -> list[tuple[tuple[int, ...], str]]:
    """The Pauli strings the kernel measures, term by term: (qubits, letters), 3 per one-qubit
    term (X, Y, Z), 9 per pair (XX, XY, ..., ZZ)."""
    out = []
    for s in terms:
        if len(s) == 1:
            out += [(s, a) for a in PAULIS]
        else:
            out += [(s, a + b) for a in PAULIS for b in PAULIS]
    return out


def _action(qubits: tuple[int, ...], letters: str, i: int) -> tuple[int, complex]:
    """P|i⟩ = phase · |i ⊕ mask⟩ for the Pauli string P: (mask, phase)."""
    mask, phase = 0, 1
    for q, a in zip(qubits, letters):
        bit = i >> q & 1
        if a in "XY":
            mask |= 1 << q
        if a == "Y":
            phase *= 1j if bit == 0 else -1j
        elif a == "Z" and bit:
            phase = -phase
    return mask, phase


def query_axes(ru: Tensor) -> Tensor:
    """Bloch axes n (H, K, n, 3) of the rotated Z: R† Z R = n_x X + n_y Y + n_z Z per qubit, for
    one-qubit query rotations R (H, K, n, 2, 2), unitary (for other R, R† Z R has an identity
    part these axes leave out)."""
    r0, r1 = ru[..., 0, :], ru[..., 1, :]  # rows of R: (H, K, n, 2)
    m = r0.conj()[..., :, None] * r0[..., None, :] - r1.conj()[..., :, None] * r1[..., None, :]
    return torch.stack([m[..., 0, 1].real, -m[..., 0, 1].imag, m[..., 0, 0].real], -1)


def term_coefficients(axes: Tensor, terms: tuple[tuple[int, ...], ...]) -> Tensor:
    """Coefficients (H, K, NM) with y[k, c] = Σ_j coef[k, j] ⟨P_j⟩ over term c's moments
    (``moments``): n_qα for one-qubit terms, n_aα n_bβ for pairs. axes (H, K, n, 3)."""
    out = []
    for s in terms:
        if len(s) == 1:
            out.append(axes[:, :, s[0]])  # (H, K, 3)
        else:
            out.append((axes[:, :, s[0], :, None] * axes[:, :, s[1], None, :]).flatten(-2))
    return torch.cat(out, -1)


# ---------------------------------------------------------------------------------------------
# IR generation: complex values are (re, im) pairs of SIMD vectors over lanes.


class _Token:
    """Emits one token's update for VEC lanes at lane offset ``o``: state rows in the scratch
    buffer ``buf`` (rows of LANES lanes, per-head scalars after them), inputs and outputs read and
    written in place in the (…, T, B) tensors."""

    def __init__(self, builder, buf, real, vec: int, coef0: int, fma) -> None:
        self.b, self.buf, self.coef0, self._fma = builder, buf, coef0, fma
        self.vty = ir.VectorType(real, vec)
        self.real, self.vec = real, vec
        self.off = None  # the lane offset o of this call in the scratch rows
        self.zero = ir.Constant(self.vty, [ir.Constant(real, 0.0)] * vec)

    def _ptr(self, base, index):
        return self.b.bitcast(self.b.gep(base, [index]), self.vty.as_pointer())

    def _row(self, row: int):
        return self._ptr(self.buf, self.b.add(self.off, ir.Constant(ir.IntType(64), row * LANES)))

    def load(self, row: int):
        return self.b.load(self._row(row), align=4)

    def store(self, row: int, v) -> None:
        self.b.store(v, self._row(row), align=4)

    def _io(self, base, start, stride, row: int):
        i64 = ir.IntType(64)
        return self._ptr(base, self.b.add(start, self.b.mul(stride, ir.Constant(i64, row))))

    def load_io(self, base, start, stride, row: int):
        """VEC lanes of row ``row`` of a (…, T, B) tensor: base[start + row·stride + v]."""
        return self.b.load(self._io(base, start, stride, row), align=4)

    def store_io(self, base, start, stride, row: int, v) -> None:
        self.b.store(v, self._io(base, start, stride, row), align=4)

    def coef(self, j: int):
        """Per-head scalar j broadcast to all lanes, loaded where it is used (a broadcast load
        costs less than keeping a hundred coefficients in registers)."""
        p = self.b.gep(self.buf, [ir.Constant(ir.IntType(64), self.coef0 + j)])
        s = self.b.load(p, align=4)
        v = self.b.insert_element(ir.Constant(self.vty, ir.Undefined), s,
                                  ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), self.vec), [0] * self.vec)
        return self.b.shuffle_vector(v, ir.Constant(self.vty, ir.Undefined), mask)

    def add(self, a, b):
        return self.b.fadd(a, b)

    def sub(self, a, b):
        return self.b.fsub(a, b)

    def mul(self, a, b):
        return self.b.fmul(a, b)

    def lin(self, terms, acc=None):
        """acc + Σ s·a·b over (s, a, b), s = ±1: a multiply, then fused multiply-adds left to
        right. Explicit fma (one rounding, IEEE) in a fixed order: the same bits every run."""
        for sign, a, b in terms:
            a = a if sign > 0 else self.b.fneg(a)
            acc = self.mul(a, b) if acc is None else self.b.call(self._fma, [a, b, acc])
        return acc

    def accumulate(self, row: int, terms) -> None:
        """Scratch row += Σ s·a·b (per-lane gradient sums)."""
        p = self._row(row)
        self.b.store(self.lin(terms, self.b.load(p, align=4)), p, align=4)

    def signed_sum(self, terms):
        """Σ ±v over [(sign, v)], left to right; zero if empty."""
        acc = None
        for sign, v in terms:
            if acc is None:
                acc = v if sign > 0 else self.b.fneg(v)
            else:
                acc = self.add(acc, v) if sign > 0 else self.sub(acc, v)
        return self.zero if acc is None else acc

    def cmul(self, a, b):  # a · b
        return (self.lin([(1, a[0], b[0]), (-1, a[1], b[1])]),
                self.lin([(1, a[0], b[1]), (1, a[1], b[0])]))

    def cmul_conj(self, a, b):  # conj(a) · b
        return (self.lin([(1, a[0], b[0]), (1, a[1], b[1])]),
                self.lin([(1, a[0], b[1]), (-1, a[1], b[0])]))

    def butterfly(self, x, q: int, m, adjoint: bool = False):
        """2×2 matrix m (8 coefficient indices: re/im of m00, m01, m10, m11) on qubit q of x,
        or mᴴ when ``adjoint``."""
        m = [self.coef(j) for j in m]
        out = list(x)
        for j in range(len(x)):
            if j >> q & 1:
                continue
            k = j | 1 << q
            (pr, pi), (qr, qi) = x[j], x[k]
            if adjoint:  # rows of mᴴ: (conj m00, conj m10), (conj m01, conj m11)
                for dst, (ar, ai, br, bi) in ((j, (m[0], m[1], m[4], m[5])),
                                              (k, (m[2], m[3], m[6], m[7]))):
                    out[dst] = (self.lin([(1, ar, pr), (1, ai, pi), (1, br, qr), (1, bi, qi)]),
                                self.lin([(1, ar, pi), (-1, ai, pr), (1, br, qi), (-1, bi, qr)]))
            else:
                for dst, (ar, ai, br, bi) in ((j, m[0:4]), (k, m[4:8])):
                    out[dst] = (self.lin([(1, ar, pr), (-1, ai, pi), (1, br, qr), (-1, bi, qi)]),
                                self.lin([(1, ar, pi), (1, ai, pr), (1, br, qi), (1, bi, qr)]))
        return out

    def gate_grad(self, g, x, q: int):
        """Terms of the 8 reals of Σ_pairs g_out ⊗ conj(in) of a butterfly on qubit q (in = x),
        for ``lin``/``accumulate``."""
        terms = [[] for _ in range(8)]
        for j in range(len(x)):
            if j >> q & 1:
                continue
            k = j | 1 << q
            for a, ga in enumerate((g[j], g[k])):
                for b, xb in enumerate((x[j], x[k])):
                    c = 2 * (2 * a + b)
                    terms[c] += [(1, ga[0], xb[0]), (1, ga[1], xb[1])]
                    terms[c + 1] += [(1, ga[1], xb[0]), (-1, ga[0], xb[1])]
        return terms

    def phases(self, cs):
        """f_i = Π_{q: bit_q(i) = 1} exp(i δ_q) from cs[q] = (cos δ_q, sin δ_q); f_0 = 1 (None)."""
        f = [None]
        for q in range(len(cs)):
            f += [cs[q] if v is None else self.cmul(v, cs[q]) for v in f]
        return f


def _rows(n: int, layers: int, n_coef_a: int) -> dict[str, int]:
    """Scratch rows (in units of LANES): state, gradient, per-lane gradient sums."""
    d = 2**n
    r = {"x": 0, "g": 2 * d, "acc": 4 * d, "n_acc": layers * n * 8 + layers * d * 2 + n_coef_a}
    r["rows"] = r["acc"] + r["n_acc"]
    return r


def _generate(n: int, layers: int, queries: int, terms: tuple[tuple[int, ...], ...],
              double: bool, bits: int = 256) -> tuple[ir.Module, dict[str, int]]:
    """The IR module of this cell shape's token functions (``forward``; ``read_back`` then
    ``mix_back`` walk one token back), each for VEC lanes of a task's scratch rows."""
    d, m = 2**n, len(terms)
    mom = moments(terms)
    per_term = [3 if len(s) == 1 else 9 for s in terms]
    n_mom = len(mom)
    rows = _rows(n, layers, queries * n_mom)
    # per-head scalars after the rows: U (L, n, 8), e (L, D, 2), term coefficients (K, NM)
    cu = lambda l_, q, r: (l_ * n + q) * 8 + r
    ce = lambda l_, i, c: layers * n * 8 + (l_ * d + i) * 2 + c
    ca = lambda k, j: layers * n * 8 + layers * d * 2 + k * n_mom + j
    au = lambda l_, q, r: rows["acc"] + cu(l_, q, r)  # per-lane gradient sums, same order
    ae = lambda l_, i, c: rows["acc"] + ce(l_, i, c)
    aa = lambda k, j: rows["acc"] + ca(k, j)
    real = ir.DoubleType() if double else ir.FloatType()
    vec = bits // (64 if double else 32)
    i64, ptr = ir.IntType(64), real.as_pointer()
    module = ir.Module(name=f"qlam_fused_n{n}")
    vty = ir.VectorType(real, vec)
    fma = ir.Function(module, ir.FunctionType(vty, [vty] * 3),
                      f"llvm.fma.v{vec}f{64 if double else 32}")

    def function(name):
        """Token function (buf, pc, ps, io, gd, o, start_in, start_out, stride) for VEC lanes:
        io is y (forward) or dL/dy (backward)."""
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr] * 5 + [i64] * 4), name)
        for arg in fn.args[:5]:
            arg.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        e = _Token(b, fn.args[0], real, vec, rows["rows"] * LANES, fma)
        e.off = fn.args[5]
        return fn.args[1:5], fn.args[6:], e, b.ret_void

    def mixing(e):
        """Per-head mixing coefficients: indices of U (L, n, 8 reals); e (L, D) broadcast at use."""
        u = [[[cu(l_, q, r) for r in range(8)] for q in range(n)] for l_ in range(layers)]
        ed = lambda l_, i: (e.coef(ce(l_, i, 0)), e.coef(ce(l_, i, 1)))
        return u, ed

    term_of = [c for c in range(m) for _ in range(per_term[c])]  # moment j -> its term
    groups: dict[int, list[int]] = {}  # moments by the bit mask of their Pauli string
    for j, (qubits, letters) in enumerate(mom):
        groups.setdefault(_action(qubits, letters, 0)[0], []).append(j)

    def moment(e, x, j, cache):
        """⟨P_j⟩ = Σ_i conj(ψ_{i⊕mask}) phase_i ψ_i, the pairs (i, i⊕mask) folded into
        2 Re(phase_i conj(ψ_{i⊕mask}) ψ_i); ``cache`` holds one mask's products."""
        qubits, letters = mom[j]
        terms_ = []
        for i in range(d):
            mask, ph = _action(qubits, letters, i)
            if mask == 0:
                if i not in cache:
                    cache[i] = e.lin([(1, x[i][0], x[i][0]), (1, x[i][1], x[i][1])])
                terms_.append((1 if ph.real > 0 else -1, cache[i]))
            elif i < i ^ mask:
                if i not in cache:
                    cache[i] = e.cmul_conj(x[i ^ mask], x[i])
                part = {1: (1, 0), -1: (-1, 0), 1j: (-1, 1), -1j: (1, 1)}[ph]
                terms_.append((part[0], cache[i][part[1]]))
        v = e.signed_sum(terms_)
        return v if _action(qubits, letters, 0)[0] == 0 else e.add(v, v)

    def load_phases(e, pc, ps, start, stride):
        return [(e.load_io(pc, start, stride, q), e.load_io(ps, start, stride, q))
                for q in range(n)]

    # forward: x ← mixing(f ⊙ x); readouts y[k, c] = Σ_j coef[k, j] ⟨P_j⟩
    (pc, ps, y, _), (s_in, s_out, stride), e, close = function("forward")
    u, ed = mixing(e)
    cs = load_phases(e, pc, ps, s_in, stride)
    x = [(e.load(rows["x"] + i), e.load(rows["x"] + d + i)) for i in range(d)]
    f = e.phases(cs)
    x = [x[0]] + [e.cmul(x[i], f[i]) for i in range(1, d)]
    for l_ in range(layers):
        for q in range(n):
            x = e.butterfly(x, q, u[l_][q])
        x = [e.cmul(x[i], ed(l_, i)) for i in range(d)]
    for i in range(d):
        e.store(rows["x"] + i, x[i][0])
        e.store(rows["x"] + d + i, x[i][1])
    ys: dict = {}  # (k, c) -> running sum, mask group by mask group (few live values)
    for mask, js in groups.items():
        cache: dict = {}
        for j in js:
            v = moment(e, x, j, cache)
            for k in range(queries):
                key = (k, term_of[j])
                ys[key] = e.lin([(1, e.coef(ca(k, j)), v)], ys.get(key))
    for (k, c), v in sorted(ys.items()):
        e.store_io(y, s_out, stride, k * m + c, v)
    close()

    # backward, in two functions (fewer live values each): on entry x = ψ_t, g = dL/dψ_t from
    # later tokens; ``read_back`` adds this token's readout gradient to g, ``mix_back`` walks
    # x and g back through the cell to ψ_{t-1}, dL/dψ_{t-1}
    (_, _, gy_, _), (s_in, s_out, stride), e, close = function("read_back")
    x = [(e.load(rows["x"] + i), e.load(rows["x"] + d + i)) for i in range(d)]
    gnew = [(e.load(rows["g"] + i), e.load(rows["g"] + d + i)) for i in range(d)]
    for mask, js in groups.items():  # g_{i⊕mask} += 2 Σ_{P: mask} g_P phase_P(i) ψ_i
        cache, gys = {}, {}
        gm = {}  # dL/d⟨P_j⟩, doubled: the state gradient of ψ†Pψ is 2 P ψ
        for j in js:
            v, c = moment(e, x, j, cache), term_of[j]
            for k in range(queries):
                if (k, c) not in gys:
                    gys[k, c] = e.load_io(gy_, s_out, stride, k * m + c)
                e.accumulate(aa(k, j), [(1, gys[k, c], v)])  # dL/dcoef[k, j]
            acc = e.lin([(1, e.coef(ca(k, j)), gys[k, c]) for k in range(queries)])
            gm[j] = e.add(acc, acc)
        for i in range(d):
            re_t, im_t = [], []  # κ_i = Σ_j g_j phase_j(i), real and imaginary parts
            for j in js:
                ph = _action(*mom[j], i)[1]
                if ph.imag == 0:
                    re_t.append((1 if ph.real > 0 else -1, gm[j]))
                else:
                    im_t.append((1 if ph.imag > 0 else -1, gm[j]))
            kr = e.signed_sum(re_t) if re_t else None
            ki = e.signed_sum(im_t) if im_t else None
            xr, xi = x[i]
            re_terms = ([(1, kr, xr)] if kr is not None else []) + ([(-1, ki, xi)] if ki is not None else [])
            im_terms = ([(1, kr, xi)] if kr is not None else []) + ([(1, ki, xr)] if ki is not None else [])
            t = i ^ mask
            gnew[t] = (e.lin(re_terms, gnew[t][0]), e.lin(im_terms, gnew[t][1]))
    for i in range(d):
        e.store(rows["g"] + i, gnew[i][0])
        e.store(rows["g"] + d + i, gnew[i][1])
    close()

    (pc, ps, _, gd), (s_in, s_out, stride), e, close = function("mix_back")
    u, ed = mixing(e)
    cs = load_phases(e, pc, ps, s_in, stride)
    x = [(e.load(rows["x"] + i), e.load(rows["x"] + d + i)) for i in range(d)]
    g = [(e.load(rows["g"] + i), e.load(rows["g"] + d + i)) for i in range(d)]
    for l_ in range(layers - 1, -1, -1):  # the mixing layers, undone on x and pulled back on g
        x = [e.cmul_conj(ed(l_, i), x[i]) for i in range(d)]
        for i in range(d):
            e.accumulate(ae(l_, i, 0), [(1, g[i][0], x[i][0]), (1, g[i][1], x[i][1])])
            e.accumulate(ae(l_, i, 1), [(1, g[i][1], x[i][0]), (-1, g[i][0], x[i][1])])
        g = [e.cmul_conj(ed(l_, i), g[i]) for i in range(d)]
        for q in range(n - 1, -1, -1):
            x = e.butterfly(x, q, u[l_][q], adjoint=True)
            for r, terms_ in enumerate(e.gate_grad(g, x, q)):
                e.accumulate(au(l_, q, r), terms_)
            g = e.butterfly(g, q, u[l_][q], adjoint=True)
    # x = f ⊙ ψ_{t-1}: dL/dδ_q = Σ_{i: bit_q(i) = 1} Im(g_i conj x_i)
    tr = [e.lin([(1, g[i][1], x[i][0]), (-1, g[i][0], x[i][1])]) for i in range(d)]
    for q in range(n):
        e.store_io(gd, s_in, stride, q, e.signed_sum([(1, tr[i]) for i in range(d) if i >> q & 1]))
    f = e.phases(cs)
    x = [x[0]] + [e.cmul_conj(f[i], x[i]) for i in range(1, d)]
    g = [g[0]] + [e.cmul_conj(f[i], g[i]) for i in range(1, d)]
    for i in range(d):
        e.store(rows["x"] + i, x[i][0])
        e.store(rows["x"] + d + i, x[i][1])
        e.store(rows["g"] + i, g[i][0])
        e.store(rows["g"] + d + i, g[i][1])
    close()
    rows.update(vec=vec, n_coef=rows["n_acc"])
    return module, rows


_ENGINES: list = []  # compiled code must outlive every call into it


def vector_bits() -> int:
    """SIMD width of the generated kernels (this one's and ``damped_fused``'s): 512 bits where the
    CPU has AVX-512, else 256. On a Xeon 512 made the damped layer about 4 % faster
    (benchmarks/damped_kernel.py) and the pure preset's whole step 3-5 % faster.
    $QLAM_VECTOR_BITS (256 or 512) overrides it: LLVM splits 512-bit vectors on smaller
    hardware, so tests run both widths on any machine."""
    env = os.environ.get("QLAM_VECTOR_BITS")
    if env in ("256", "512"):
        return int(env)
    return 512 if _has_avx512() else 256


@lru_cache(maxsize=None)
def _has_avx512() -> bool:
    """Whether the CPU has AVX-512: asked once (LLVM's feature query takes 0.3 ms, and every
    kernel call asks for the width)."""
    return "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")


def _cache_dir() -> Path | None:
    """Where compiled token code is kept between processes: $QLAM_KERNEL_CACHE, else the user's
    cache folder, else none (then every process compiles, about a second)."""
    env = os.environ.get("QLAM_KERNEL_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = base if env else base / "qlam-qiskit" / "kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return folder if os.access(folder, os.W_OK) else None
    except OSError:
        return None


def jit(module: ir.Module):
    """Compile generated IR to machine code; returns name -> function address.

    The machine code is kept on disk, keyed by the IR, the CPU and the LLVM version, so later
    processes load it instead of compiling; it is the same code either way, so the same bits.
    Also used by ``damped_fused``."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    mod = llvm.parse_assembly(str(module))
    mod.verify()
    cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    tm = llvm.Target.from_default_triple().create_target_machine(cpu=cpu, features=features,
                                                                 opt=3)
    key = hashlib.sha256("\n".join([str(module), llvm.get_default_triple(), cpu, features,
                                     ".".join(map(str, llvm.llvm_version_info))]).encode())
    folder = _cache_dir()
    path = folder / f"fused_{key.hexdigest()[:32]}.o" if folder else None
    cached = path.read_bytes() if path is not None and path.is_file() else None
    if cached is None:  # optimize only what will be compiled
        pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
        pb.getModulePassManager().run(mod, pb)
    engine = llvm.create_mcjit_compiler(mod, tm)

    def store(_, buffer: bytes) -> None:
        if path is not None and cached is None:
            try:
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(buffer)
                os.replace(tmp, path)  # concurrent processes write the same bytes
            except OSError:
                pass

    engine.set_object_cache(store, lambda _: cached)
    engine.finalize_object()
    _ENGINES.append((engine, mod))
    return engine.get_function_address


@lru_cache(maxsize=None)
def _compiled(n: int, layers: int, queries: int, terms: tuple[tuple[int, ...], ...],
              double: bool, bits: int = 256) -> tuple[int, tuple[int, int], dict[str, int]]:
    """Addresses of the compiled token functions (forward; read_back, mix_back) and the rows."""
    module, rows = _generate(n, layers, queries, terms, double, bits)
    address = jit(module)
    return address("forward"), (address("read_back"), address("mix_back")), rows


# ---------------------------------------------------------------------------------------------
# The drivers: numba threads over tasks (one head, LANES samples), T tokens each.

if numba is not None:

    def _data(context, builder, ty, value):
        return context.make_array(ty)(context, builder, value).data

    @intrinsic
    def _run(typingctx, fn, buf, pc, ps, io, gd, o, s_in, s_out, stride):
        """Call the compiled token function at address fn (``_generate``'s signature)."""
        sig = types.void(types.intp, buf, pc, ps, io, gd, types.intp, types.intp, types.intp,
                         types.intp)

        def codegen(context, builder, signature, args):
            ptrs = [_data(context, builder, t, v) for t, v in zip(signature.args[1:6], args[1:6])]
            fnty = ir.FunctionType(ir.VoidType(), [p.type for p in ptrs] + [ir.IntType(64)] * 4)
            builder.call(builder.inttoptr(args[0], fnty.as_pointer()), ptrs + list(args[6:]))
            return context.get_dummy_value()

        return sig, codegen

    @njit(parallel=True, cache=True)
    def _forward(fn, vec, x0, pc, ps, coef, rows, every, keep, y):  # pragma: no cover
        """x0 (H, 2D, B) planar start states, cos/sin δ (H, n, T, B), per-head scalars coef
        (H, C) -> readouts into y (H, R, T, B); B is a multiple of LANES. Returns the last
        states (H, 2D, B). When every > 0 the state after token t goes to
        keep[(t+1)//every - 1] whenever (t+1) % every == 0."""
        n_head, d2, n_b = x0.shape
        n_q, n_t, n_out = pc.shape[1], pc.shape[2], y.shape[1]
        n_blk = n_b // LANES
        stride = n_t * n_b  # between rows (qubits, readouts) of one head
        last = np.empty_like(x0)
        for task in prange(n_head * n_blk):
            h = task // n_blk
            b0 = (task % n_blk) * LANES
            buf = np.zeros(rows * LANES + coef.shape[1], dtype=x0.dtype)
            buf[rows * LANES:] = coef[h]
            for i in range(d2):
                buf[i * LANES:(i + 1) * LANES] = x0[h, i, b0:b0 + LANES]
            for t in range(n_t):
                s_in, s_out = (h * n_q * n_t + t) * n_b + b0, (h * n_out * n_t + t) * n_b + b0
                for o in range(0, LANES, vec):
                    _run(fn, buf, pc, ps, y, y, o, s_in + o, s_out + o, stride)
                if every > 0 and (t + 1) % every == 0:
                    for i in range(d2):
                        keep[(t + 1) // every - 1, h, i, b0:b0 + LANES] = buf[i * LANES:(i + 1) * LANES]
            for i in range(d2):
                last[h, i, b0:b0 + LANES] = buf[i * LANES:(i + 1) * LANES]
        return last

    @njit(parallel=True, cache=True)
    def _backward(read_back, mix_back, vec, x_t, gy, pc, ps, coef, rows, row_acc, n_acc, every,
                  keep):  # pragma: no cover - compiled
        """Adjoint walk of ``_forward`` from the last states x_t (H, 2D, B) with dL/dy = gy
        (H, R, T, B). Returns dL/dx0 (H, 2D, B), dL/dδ (H, n, T, B) and per task the float64
        sums of the gradients of the per-head scalars (tasks, n_acc)."""
        n_head, d2, n_b = x_t.shape
        n_q, n_t, n_out = pc.shape[1], pc.shape[2], gy.shape[1]
        n_blk = n_b // LANES
        stride = n_t * n_b
        g_x0 = np.empty_like(x_t)
        g_delta = np.empty_like(pc)
        g_coef = np.zeros((n_head * n_blk, n_acc))
        for task in prange(n_head * n_blk):
            h = task // n_blk
            b0 = (task % n_blk) * LANES
            buf = np.zeros(rows * LANES + coef.shape[1], dtype=x_t.dtype)
            buf[rows * LANES:] = coef[h]
            acc = np.zeros(n_acc * LANES)  # per-lane float64 sums
            sums = buf[row_acc * LANES:(row_acc + n_acc) * LANES]
            for i in range(d2):
                buf[i * LANES:(i + 1) * LANES] = x_t[h, i, b0:b0 + LANES]
            for t in range(n_t - 1, -1, -1):
                s_in, s_out = (h * n_q * n_t + t) * n_b + b0, (h * n_out * n_t + t) * n_b + b0
                for o in range(0, LANES, vec):
                    _run(read_back, buf, pc, ps, gy, g_delta, o, s_in + o, s_out + o, stride)
                    _run(mix_back, buf, pc, ps, gy, g_delta, o, s_in + o, s_out + o, stride)
                if t % 32 == 0:  # per-lane partial sums over at most 32 tokens, then float64
                    for a in range(n_acc * LANES):
                        acc[a] += sums[a]
                        sums[a] = 0.0
                if every > 0 and t % every == 0 and t > 0:  # the stored state before token t
                    for i in range(d2):
                        buf[i * LANES:(i + 1) * LANES] = keep[t // every - 1, h, i, b0:b0 + LANES]
            for a in range(n_acc):
                s = 0.0
                for l in range(LANES):
                    s += acc[a * LANES + l]
                g_coef[task, a] = s
            for i in range(d2):
                g_x0[h, i, b0:b0 + LANES] = buf[(d2 + i) * LANES:(d2 + i + 1) * LANES]
        return g_x0, g_delta, g_coef


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _FusedReadout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x0: Tensor, delta: Tensor, coef: Tensor, shape: tuple, every: int) -> Tensor:
        n, layers, queries, terms = shape
        h, _, t_len, b = delta.shape  # b: a multiple of LANES
        fw, bw, rows = _compiled(n, layers, queries, terms, delta.dtype == torch.float64,
                                 vector_bits())
        pc, ps = torch.cos(delta), torch.sin(delta)  # (H, n, T, B): vectorized trig, once
        y = torch.empty((h, queries * len(terms), t_len, b), dtype=delta.dtype)
        keep = torch.empty((t_len // every if every else 0,) + x0.shape, dtype=x0.dtype)
        last = _forward(fw, rows["vec"], _np(x0), pc.numpy(), ps.numpy(), _np(coef), rows["rows"], every,
                        keep.numpy(), y.numpy())
        ctx.bw, ctx.rows, ctx.every = bw, rows, every
        ctx.save_for_backward(pc, ps, coef, torch.from_numpy(last), keep)
        return y  # (H, K·M, T, B)

    @staticmethod
    def backward(ctx, gy: Tensor):
        pc, ps, coef, last, keep = ctx.saved_tensors
        r = ctx.rows
        g_x0, g_delta, g_coef = _backward(*ctx.bw, r["vec"], last.numpy(), _np(gy.to(pc.dtype)), pc.numpy(),
                                          ps.numpy(), coef.numpy(), r["rows"], r["acc"],
                                          r["n_acc"], ctx.every, keep.numpy())
        h = coef.shape[0]
        g_coef = torch.from_numpy(g_coef).view(h, -1, g_coef.shape[-1]).sum(1).to(coef.dtype)
        return torch.from_numpy(g_x0), torch.from_numpy(g_delta), g_coef, None, None


def product_readout(psi0: Tensor, delta: Tensor, u: Tensor, e: Tensor, ru: Tensor,
                    terms: tuple[tuple[int, ...], ...], *,
                    anchor_every: int = ANCHOR_EVERY) -> Tensor:
    """Fused CPU scan read at every token: ψ0 (H, B, D), relative input phases δ (H, n, T, B)
    (token t multiplies amplitude i by exp(i Σ_{q: bit_q(i) = 1} δ_q), the input block up to a
    global phase), mixing U (H, L, n, 2, 2) and e (H, L, D), one-qubit query rotations
    R (H, K, n, 2, 2), Z terms (qubit tuples) -> readouts y (H, K, M, T, B), real:

        y[h, k, c, t, b] = ⟨ψ_t| (⊗_q R[h, k, q])† Z_{terms[c]} (⊗_q R[h, k, q]) |ψ_t⟩

    Differentiable in ψ0, δ, U, e and R; ``product.product_readout_ref`` is the same function in
    plain autograd. ``anchor_every`` k > 0 keeps every k-th state for the backward walk."""
    if numba is None:
        raise RuntimeError("the fused kernel needs numba: pip install numba")
    h, b, d = psi0.shape
    n, layers, queries = delta.shape[1], u.shape[1], ru.shape[1]
    terms = tuple(tuple(int(q) for q in s) for s in terms)
    if not supports(n, terms):
        raise ValueError(f"the fused readout reads memories of up to {MAX_QUBITS} qubits with "
                         f"one- and two-qubit Z terms; got {n} qubits, terms {terms}")
    match_threads()
    real = torch.float64 if psi0.dtype == torch.complex128 else torch.float32
    pad = -b % LANES  # tasks run LANES samples: pad with zero states, which stay zero
    x0 = torch.view_as_real(psi0).permute(0, 3, 2, 1).reshape(h, 2 * d, b)  # (H, 2D, B)
    delta = delta.to(real)
    if pad:
        x0, delta = nn_pad(x0, (0, pad)), nn_pad(delta, (0, pad))
    coef = torch.cat([torch.view_as_real(u.to(psi0.dtype)).reshape(h, -1),  # (H, L·n·8)
                      torch.view_as_real(e.to(psi0.dtype)).reshape(h, -1),  # (H, L·D·2)
                      term_coefficients(query_axes(ru.to(psi0.dtype)), terms).reshape(h, -1)],
                     -1).to(real)
    y = _FusedReadout.apply(x0.to(real).contiguous(), delta.contiguous(), coef,
                            (n, layers, queries, terms), anchor_every)
    return y[..., :b].reshape(h, queries, len(terms), delta.shape[2], b)
