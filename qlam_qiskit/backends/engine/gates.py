"""Differentiable torch matrices for every Qiskit standard gate.

Every builder takes a tuple of real angle tensors of one shape ``S`` (or nothing) and returns a
complex tensor ``S + (2**k, 2**k)`` in Qiskit's convention: little-endian over the gate's qargs
(``qargs[0]`` is the least significant bit of the matrix index). Matrices match
``qiskit.circuit.library`` gate ``to_matrix()`` exactly, global phase included: parameter-free
gates take their matrix straight from Qiskit, parameterized ones are written out in torch so that
gradients flow to their angles.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import torch
from qiskit.circuit import Gate
from qiskit.circuit.library import get_standard_gate_name_mapping

Tensor = torch.Tensor

STANDARD = {name: op for name, op in get_standard_gate_name_mapping().items()
            if isinstance(op, Gate)}
"""Qiskit's standard gates by name (measure, reset and delay are instructions, not gates)."""


def _cdt(t: Tensor) -> torch.dtype:
    """Complex dtype matching a real tensor's precision."""
    return torch.complex128 if t.dtype == torch.float64 else torch.complex64


def _stack(rows: list[list[Tensor]]) -> Tensor:
    """Stack a nested list of same-shape complex tensors into ``S + (r, c)``."""
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def _cis(a: Tensor) -> Tensor:
    """exp(i a) for a real tensor a."""
    return torch.polar(torch.ones_like(a), a)


def _cs(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """cos(t/2), sin(t/2), 0 and 1 as complex tensors of t's shape."""
    c, s = torch.cos(t / 2).to(_cdt(t)), torch.sin(t / 2).to(_cdt(t))
    return c, s, torch.zeros_like(c), torch.ones_like(c)


def _rx(t: Tensor, **_) -> Tensor:
    c, s = torch.cos(t / 2).to(_cdt(t)), torch.sin(t / 2).to(_cdt(t))
    return _stack([[c, -1j * s], [-1j * s, c]])


def _ry(t: Tensor, **_) -> Tensor:
    c, s = torch.cos(t / 2).to(_cdt(t)), torch.sin(t / 2).to(_cdt(t))
    return _stack([[c, -s], [s, c]])


def _rz(t: Tensor, **_) -> Tensor:
    z = torch.zeros_like(t).to(_cdt(t))
    return _stack([[_cis(-t / 2), z], [z, _cis(t / 2)]])


def _p(t: Tensor, **_) -> Tensor:
    o, z = torch.ones_like(t).to(_cdt(t)), torch.zeros_like(t).to(_cdt(t))
    return _stack([[o, z], [z, _cis(t)]])


def _r(th: Tensor, ph: Tensor, **_) -> Tensor:
    c, s, _, _ = _cs(th)
    return _stack([[c, -1j * _cis(-ph) * s], [-1j * _cis(ph) * s, c]])


def _u(th: Tensor, ph: Tensor, la: Tensor, **_) -> Tensor:
    c, s = torch.cos(th / 2).to(_cdt(th)), torch.sin(th / 2).to(_cdt(th))
    return _stack([[c, -_cis(la) * s], [_cis(ph) * s, _cis(ph + la) * c]])


def _u2(ph: Tensor, la: Tensor, **_) -> Tensor:
    return _u(torch.full_like(ph, math.pi / 2), ph, la)


def _phased_u(th: Tensor, ph: Tensor, la: Tensor, ga: Tensor, **_) -> Tensor:
    """e^{iγ} U(θ, φ, λ): the target block of CU."""
    return _cis(ga)[..., None, None] * _u(th, ph, la)


def _global_phase(t: Tensor, **_) -> Tensor:
    return _cis(t)[..., None, None]  # S + (1, 1)


def _rzz(t: Tensor, **_) -> Tensor:
    a, b = _cis(-t / 2), _cis(t / 2)
    z = torch.zeros_like(a)
    return _stack([[a, z, z, z], [z, b, z, z], [z, z, b, z], [z, z, z, a]])


def _rxx(t: Tensor, **_) -> Tensor:
    c, s = torch.cos(t / 2).to(_cdt(t)), -1j * torch.sin(t / 2).to(_cdt(t))
    z = torch.zeros_like(c)
    return _stack([[c, z, z, s], [z, c, s, z], [z, s, c, z], [s, z, z, c]])


def _ryy(t: Tensor, **_) -> Tensor:
    c, s = torch.cos(t / 2).to(_cdt(t)), 1j * torch.sin(t / 2).to(_cdt(t))
    z = torch.zeros_like(c)
    return _stack([[c, z, z, s], [z, c, -s, z], [z, -s, c, z], [s, z, z, c]])


def _rzx(t: Tensor, **_) -> Tensor:
    c, s, z, _ = _cs(t)  # exp(-iθ/2 X⊗Z): Z on qargs[0], X on qargs[1]
    return _stack([[c, z, -1j * s, z], [z, c, z, 1j * s], [-1j * s, z, c, z], [z, 1j * s, z, c]])


def _xx_plus_yy(th: Tensor, beta: Tensor, **_) -> Tensor:
    c, s, z, o = _cs(th)
    return _stack([[o, z, z, z], [z, c, -1j * s * _cis(-beta), z],
                   [z, -1j * s * _cis(beta), c, z], [z, z, z, o]])


def _xx_minus_yy(th: Tensor, beta: Tensor, **_) -> Tensor:
    c, s, z, o = _cs(th)
    return _stack([[c, z, z, -1j * s * _cis(-beta)], [z, o, z, z],
                   [z, z, o, z], [-1j * s * _cis(beta), z, z, c]])


def _controlled(base: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Controlled version with qargs[0] as control (Qiskit's convention): acts on odd indices."""

    def build(*angles: Tensor, **_) -> Tensor:
        m = base(*angles)  # S + (2, 2)
        o, z = torch.ones_like(m[..., 0, 0]), torch.zeros_like(m[..., 0, 0])
        return _stack([[o, z, z, z], [z, m[..., 0, 0], z, m[..., 0, 1]],
                       [z, z, o, z], [z, m[..., 1, 0], z, m[..., 1, 1]]])

    return build


_BUILDERS: dict[str, Callable[..., Tensor]] = {
    "global_phase": _global_phase, "rx": _rx, "ry": _ry, "rz": _rz, "p": _p, "u1": _p,
    "r": _r, "u2": _u2, "u": _u, "u3": _u, "rzz": _rzz, "rxx": _rxx, "ryy": _ryy, "rzx": _rzx,
    "xx_plus_yy": _xx_plus_yy, "xx_minus_yy": _xx_minus_yy, "cp": _controlled(_p),
    "cu1": _controlled(_p), "crx": _controlled(_rx), "cry": _controlled(_ry),
    "crz": _controlled(_rz), "cu3": _controlled(_u), "cu": _controlled(_phased_u),
}
"""Torch builders of the parameterized standard gates."""


def _fixed(matrix: np.ndarray) -> Callable[..., Tensor]:
    """A parameter-free gate: the builder ignores angles and returns Qiskit's matrix."""

    def build(*_: Tensor, dtype: torch.dtype = torch.complex64, device=None) -> Tensor:
        return torch.tensor(matrix, dtype=dtype, device=device)

    return build


class GateSpec(NamedTuple):
    """What the engine knows about one gate."""

    num_qubits: int
    num_angles: int
    build: Callable[..., Tensor]
    diagonal: bool
    """Structurally diagonal (zero off the diagonal at every angle): runs as elementwise phases."""


def _is_diagonal(build: Callable[..., Tensor], num_angles: int) -> bool:
    """Exact zeros off the diagonal at generic angles (builders write structural zeros)."""
    ang = [torch.tensor(0.37 + 0.71 * i, dtype=torch.float64) for i in range(num_angles)]
    mat = build(*ang, dtype=torch.complex128)  # (2^k, 2^k)
    return bool(torch.count_nonzero(mat - torch.diag_embed(mat.diagonal())) == 0)


def _spec(op: Gate) -> GateSpec | None:
    """The spec of a standard gate, or None for a parameterized one without a torch builder."""
    n_ang = len(op.params)
    build = _BUILDERS.get(op.name) if n_ang else _fixed(np.asarray(op.to_matrix(), dtype=complex))
    return None if build is None else GateSpec(op.num_qubits, n_ang, build,
                                               _is_diagonal(build, n_ang))


GATES: dict[str, GateSpec] = {name: s for name, op in sorted(STANDARD.items())
                              if (s := _spec(op)) is not None}
"""name -> (number of qubits, number of angles, builder, diagonal?) for every standard gate."""

SUPPORTED_GATES: tuple[str, ...] = tuple(sorted(GATES))


def gate_matrix(name: str, angles: tuple[Tensor, ...], *, dtype: torch.dtype, device=None) -> Tensor:
    """Matrix of gate ``name`` for angle tensors of shape S: returns ``S + (2**k, 2**k)``."""
    _, n_ang, build, _ = GATES[name]
    if n_ang == 0:
        return build(dtype=dtype, device=device)
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    return build(*(a.to(real) for a in angles)).to(dtype)


def apply_matrix(psi: Tensor, mat: Tensor, qubits: tuple[int, ...], n: int) -> Tensor:
    """Apply a k-qubit matrix to states ``psi`` (N, 2**n) on ``qubits`` (Qiskit order).

    ``mat`` is (2**k, 2**k) shared by all states, or (N, 2**k, 2**k) one per state; k = 0 (a
    global phase, ``mat`` (1, 1)) scales every amplitude.
    """
    k, N = len(qubits), psi.shape[0]
    axes = [n - q for q in reversed(qubits)]  # tensor axes of (N, 2, ..., 2): qubit q -> axis n-q
    tail = list(range(n + 1 - k, n + 1))
    st = psi.reshape((N,) + (2,) * n).movedim(axes, tail)  # (N, ..., 2**k split)
    shape = st.shape
    st = st.reshape(N, -1, 2**k)  # (N, R, 2**k)
    if mat.dim() == 2:
        st = st @ mat.transpose(-1, -2)
    else:
        st = torch.einsum("nij,nrj->nri", mat, st)
    return st.reshape(shape).movedim(tail, axes).reshape(N, 2**n)
