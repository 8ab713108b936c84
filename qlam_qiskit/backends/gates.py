"""Differentiable torch matrices for the Qiskit gates the statevector engine supports.

Every builder takes a tuple of real angle tensors of one shape ``S`` (or nothing) and returns a
complex tensor ``S + (2**k, 2**k)`` in Qiskit's convention: little-endian over the gate's qargs
(``qargs[0]`` is the least significant bit of the matrix index). Matrices match
``qiskit.circuit.library`` gate ``to_matrix()`` exactly, global phase included.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Tensor = torch.Tensor

_SQ2 = 1.0 / math.sqrt(2.0)


def _const(rows: list[list[complex]]) -> Callable[..., Tensor]:
    """A parameter-free gate: the builder ignores angles and returns the fixed matrix."""

    def build(*_: Tensor, dtype: torch.dtype = torch.complex64, device=None) -> Tensor:
        return torch.tensor(rows, dtype=dtype, device=device)

    return build


def _stack(rows: list[list[Tensor]]) -> Tensor:
    """Stack a nested list of same-shape complex tensors into ``S + (r, c)``."""
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def _cis(a: Tensor) -> Tensor:
    """exp(i a) for a real tensor a."""
    return torch.polar(torch.ones_like(a), a)


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


def _u(th: Tensor, ph: Tensor, la: Tensor, **_) -> Tensor:
    c, s = torch.cos(th / 2).to(_cdt(th)), torch.sin(th / 2).to(_cdt(th))
    return _stack([[c, -_cis(la) * s], [_cis(ph) * s, _cis(ph + la) * c]])


def _u2(ph: Tensor, la: Tensor, **_) -> Tensor:
    return _u(torch.full_like(ph, math.pi / 2), ph, la)


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


def _controlled(base: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Controlled version with qargs[0] as control (Qiskit's convention): acts on odd indices."""

    def build(*angles: Tensor, **_) -> Tensor:
        m = base(*angles)  # S + (2, 2)
        o, z = torch.ones_like(m[..., 0, 0]), torch.zeros_like(m[..., 0, 0])
        return _stack([[o, z, z, z], [z, m[..., 0, 0], z, m[..., 0, 1]],
                       [z, z, o, z], [z, m[..., 1, 0], z, m[..., 1, 1]]])

    return build


def _cdt(t: Tensor) -> torch.dtype:
    """Complex dtype matching a real tensor's precision."""
    return torch.complex128 if t.dtype == torch.float64 else torch.complex64


# name -> (number of qubits, number of angles, builder, diagonal?)
GATES: dict[str, tuple[int, int, Callable[..., Tensor], bool]] = {
    "id": (1, 0, _const([[1, 0], [0, 1]]), True),
    "x": (1, 0, _const([[0, 1], [1, 0]]), False),
    "y": (1, 0, _const([[0, -1j], [1j, 0]]), False),
    "z": (1, 0, _const([[1, 0], [0, -1]]), True),
    "h": (1, 0, _const([[_SQ2, _SQ2], [_SQ2, -_SQ2]]), False),
    "s": (1, 0, _const([[1, 0], [0, 1j]]), True),
    "sdg": (1, 0, _const([[1, 0], [0, -1j]]), True),
    "t": (1, 0, _const([[1, 0], [0, complex(_SQ2, _SQ2)]]), True),
    "tdg": (1, 0, _const([[1, 0], [0, complex(_SQ2, -_SQ2)]]), True),
    "sx": (1, 0, _const([[0.5 + 0.5j, 0.5 - 0.5j], [0.5 - 0.5j, 0.5 + 0.5j]]), False),
    "sxdg": (1, 0, _const([[0.5 - 0.5j, 0.5 + 0.5j], [0.5 + 0.5j, 0.5 - 0.5j]]), False),
    "rx": (1, 1, _rx, False),
    "ry": (1, 1, _ry, False),
    "rz": (1, 1, _rz, True),
    "p": (1, 1, _p, True),
    "u1": (1, 1, _p, True),
    "u2": (1, 2, _u2, False),
    "u": (1, 3, _u, False),
    "u3": (1, 3, _u, False),
    "cx": (2, 0, _const([[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]]), False),
    "cy": (2, 0, _const([[1, 0, 0, 0], [0, 0, 0, -1j], [0, 0, 1, 0], [0, 1j, 0, 0]]), False),
    "cz": (2, 0, _const([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1]]), True),
    "swap": (2, 0, _const([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]), False),
    "ecr": (2, 0, _const([[_SQ2 * v for v in r] for r in
                          [[0, 1, 0, 1j], [1, 0, -1j, 0], [0, 1j, 0, 1], [-1j, 0, 1, 0]]]), False),
    "cp": (2, 1, _controlled(_p), True),
    "crx": (2, 1, _controlled(_rx), False),
    "cry": (2, 1, _controlled(_ry), False),
    "crz": (2, 1, _controlled(_rz), True),
    "rzz": (2, 1, _rzz, True),
    "rxx": (2, 1, _rxx, False),
    "ryy": (2, 1, _ryy, False),
}

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

    ``mat`` is (2**k, 2**k) shared by all states, or (N, 2**k, 2**k) one per state.
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
