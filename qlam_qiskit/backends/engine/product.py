"""Product form of a QLAM cell: per-qubit input phases, then layers of one-qubit gates and diagonals.

Most QLAM cells (RZ inputs; RY·RZ mixing with CZ or RZZ entanglers, any depth) apply per token

    ψ ← e_L ⊙ (⊗_q U_{L,q}) … e_1 ⊙ (⊗_q U_{1,q}) (f_t ⊙ ψ),   f_t[i] = exp(i Σ_q α_t[q, bit_q(i)])

with 2×2 unitaries U, constant diagonals e (the entanglers and trailing RZs) and per-qubit input
phases α. Applied gate by gate this costs O(n·2^n) per token instead of the fused unitary's
O(4^n), and nothing 2^n×2^n is ever built, so wide memories (14 qubits and more) fit.
``product_scan_ref`` runs the form in plain autograd; the fused kernel (``kernels.py``) is tested
against it.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch

from .gates import GATES, apply_matrix, gate_matrix
from .phases import kron_phases
from .compile import Gate, gate_angles, input_map
from .program import CircuitProgram

Tensor = torch.Tensor


@dataclass(frozen=True)
class ProductForm:
    """A (diag, fixed) cell split into per-qubit input phases and product layers."""

    num_qubits: int
    input_gates: tuple[Gate, ...]  # the G one-qubit diagonal input gates
    qubits: np.ndarray  # (G,): the qubit of gate g
    local: np.ndarray  # (G, 2): gate g's phase on |0>, |1> per unit angle
    layers: tuple[tuple[tuple[tuple[Gate, ...], ...], tuple[Gate, ...]], ...]
    """Per layer: (one-qubit gates per qubit, in order; diagonal gates applied after them)."""
    global_phase: float

    @property
    def depth(self) -> int:
        """Number of product layers L."""
        return len(self.layers)

    def inputs(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Input map A (G, m), offsets o (H, G) for weights w (H, P), gate qubits (G,) and
        phases per unit angle (G, 2): gate g turns by θ Aᵀ + o on its qubit."""
        a_in, off = input_map(self.input_gates, w)  # (G, m), (H, G)
        return (a_in, off, torch.as_tensor(self.qubits, device=w.device),
                torch.as_tensor(self.local, dtype=w.dtype, device=w.device))

    def unitaries(self, w: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Weights w (H, P) -> one-qubit unitaries U (H, L, n, 2, 2) and diagonals e (H, L, D)."""
        h, d = w.shape[0], 2**self.num_qubits
        eye = torch.eye(2, dtype=dtype, device=w.device)
        idx = torch.arange(d, device=w.device)
        us, es = [], []
        for singles, diags in self.layers:
            per_q = []
            for gates in singles:
                u = eye.expand(h, 2, 2)
                for g in gates:
                    u = _per_head(g, w, dtype, h) @ u  # later gates act after earlier ones
                per_q.append(u)
            us.append(torch.stack(per_q, 1))  # (H, n, 2, 2)
            e = torch.ones(h, d, dtype=dtype, device=w.device)
            for g in diags:
                diag = _per_head(g, w, dtype, h).diagonal(dim1=-2, dim2=-1)  # (H, 2^k)
                loc = torch.zeros_like(idx)  # (D,): local index; a global phase has none
                for j, q in enumerate(g.qubits):
                    loc = loc + (((idx >> q) & 1) << j)
                e = e * diag[:, loc]
            es.append(e)
        if self.global_phase:  # once per token: on the first layer's diagonal
            es[0] = es[0] * complex(np.cos(self.global_phase), np.sin(self.global_phase))
        return torch.stack(us, 1), torch.stack(es, 1)  # (H, L, n, 2, 2), (H, L, D)


def _per_head(g: Gate, w: Tensor, dtype: torch.dtype, h: int) -> Tensor:
    """Matrix of a fixed gate per head: (H, 2^k, 2^k)."""
    mat = gate_matrix(g.name, gate_angles(g, None, w), dtype=dtype, device=w.device)
    return mat.expand(h, *mat.shape[-2:]) if mat.dim() == 2 else mat


def product_form(program: CircuitProgram) -> ProductForm | None:
    """The product form of a compiled cell, or None when it has none (e.g. CX entanglers,
    two-qubit input gates, input gates that are not diagonal)."""
    if program.kinds != ["diag", "fixed"]:
        return None
    n = program.num_qubits
    diag, fixed = program.segments
    if any(len(g.qubits) != 1 or len(g.a_in) != 1 for g in diag.gates):
        return None
    _, qubits, local = program.diag_tables[0]
    layers = _layers(fixed.gates, n)
    if layers is None:
        return None
    return ProductForm(n, diag.gates, np.array(qubits), local.numpy(), layers,
                       program.global_phase)


def _layers(gates: tuple[Gate, ...], n: int):
    """Group fixed gates into layers (one-qubit gates, then diagonal gates), or None.

    A one-qubit gate joins the current layer unless a diagonal gate of the layer already touched
    its qubit (then it opens a new layer, or joins the diagonals if it is itself diagonal)."""
    layers = []
    singles: list[list[Gate]] = [[] for _ in range(n)]
    diags: list[Gate] = []
    touched: set[int] = set()
    for g in gates:
        k, _, _, is_diag = GATES[g.name]
        if k == 1 and g.qubits[0] not in touched:
            singles[g.qubits[0]].append(g)
        elif is_diag:
            diags.append(g)
            touched.update(g.qubits)
        elif k == 1:
            layers.append((tuple(map(tuple, singles)), tuple(diags)))
            singles, diags, touched = [[] for _ in range(n)], [], set()
            singles[g.qubits[0]].append(g)
        else:
            return None  # a non-diagonal multi-qubit gate (cx, swap, ...)
    layers.append((tuple(map(tuple, singles)), tuple(diags)))
    return tuple(layers)


def input_angles(theta: Tensor, a_in: Tensor, off: Tensor, qubits: Tensor, local: Tensor,
                 n: int) -> Tensor:
    """θ (T, H, B, m) -> per-qubit phase angles α (T, H, B, n, 2): Σ over the gates on each qubit
    of (θ Aᵀ + o) times their phases per unit angle."""
    ang = theta @ a_in.T.to(theta.dtype) + off[:, None, :].to(theta.dtype)  # (T, H, B, G)
    to_q = torch.zeros(len(qubits), n, 2, dtype=theta.dtype, device=theta.device)
    to_q[torch.arange(len(qubits), device=theta.device), qubits.long()] = local.to(theta.dtype)
    return (ang @ to_q.flatten(1)).unflatten(-1, (n, 2))


def product_step(psi: Tensor, alpha_t: Tensor, u: Tensor, e: Tensor) -> Tensor:
    """One token in plain autograd: ψ (H, B, D), α_t (H, B, n, 2), U (H, L, n, 2, 2), e (H, L, D)."""
    h, b, d = psi.shape
    n = alpha_t.shape[-2]
    x = psi * kron_phases(alpha_t).to(psi.dtype)
    for lay in range(u.shape[1]):
        flat = x.reshape(h * b, d)
        for q in range(n):
            flat = apply_matrix(flat, u[:, lay, q].repeat_interleave(b, 0), (q,), n)
        x = flat.reshape(h, b, d) * e[:, lay, None, :]
    return x


def product_scan_ref(psi0: Tensor, theta: Tensor, a_in: Tensor, off: Tensor, qubits: Tensor,
                     local: Tensor, u: Tensor, e: Tensor, *, all_states: bool = True) -> Tensor:
    """Reference scan, same arguments as ``kernels.product_scan``: ψ0 (H, B, D), θ (T, H, B, m)
    -> states (T, H, B, D) or the last (H, B, D)."""
    alpha = input_angles(theta, a_in, off, qubits, local, psi0.shape[-1].bit_length() - 1)
    psi, states = psi0, []
    for a in alpha.unbind(0):  # (H, B, n, 2)
        psi = product_step(psi, a, u, e)
        if all_states:
            states.append(psi)
    return torch.stack(states) if all_states else psi
