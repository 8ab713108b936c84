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
from .compile import Gate, input_map
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

    def relative_phases(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """The input block up to a global phase, affine in the inputs: P (m, n) and offsets
        c (H, n) for weights w (H, P), so token θ (m,) of head h turns |1⟩ against |0⟩ on
        qubit q by δ_q = θ P[:, q] + c[h, q] (amplitude i by exp(i Σ_{q: bit_q(i) = 1} δ_q))."""
        a_in, off, qubits, local = self.inputs(w)  # (G, m), (H, G), (G,), (G, 2)
        to_q = torch.zeros(len(qubits), self.num_qubits, dtype=w.dtype, device=w.device)
        to_q[torch.arange(len(qubits), device=w.device), qubits.long()] = local[:, 1] - local[:, 0]
        return a_in.T @ to_q, off @ to_q  # (m, n), (H, n)

    def unitaries(self, w: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Weights w (H, P) -> one-qubit unitaries U (H, L, n, 2, 2) and diagonals e (H, L, D)."""
        h, d = w.shape[0], 2**self.num_qubits
        idx = torch.arange(d, device=w.device)
        us, es = [], []
        for singles, diags in self.layers:
            us.append(one_qubit_products(singles, w, dtype))  # (H, n, 2, 2)
            e = torch.ones(h, d, dtype=dtype, device=w.device)
            for name, gates in _by_name(diags).items():  # every gate of a kind at once
                diag = gate_matrix(name, _angles(gates, w), dtype=dtype, device=w.device)
                diag = diag.diagonal(dim1=-2, dim2=-1)  # (H, G, 2^k) or (2^k,) without angles
                for j, g in enumerate(gates):
                    loc = torch.zeros_like(idx)  # (D,): local index; a global phase has none
                    for b, q in enumerate(g.qubits):
                        loc = loc + (((idx >> q) & 1) << b)
                    e = e * (diag[:, j, loc] if diag.dim() == 3 else diag[loc])
            es.append(e)
        if self.global_phase:  # once per token: on the first layer's diagonal
            es[0] = es[0] * complex(np.cos(self.global_phase), np.sin(self.global_phase))
        return torch.stack(us, 1), torch.stack(es, 1)  # (H, L, n, 2, 2), (H, L, D)


def _by_name(gates) -> dict[str, list[Gate]]:
    out: dict[str, list[Gate]] = {}
    for g in gates:
        out.setdefault(g.name, []).append(g)
    return out


def _angles(gates: list[Gate], w: Tensor) -> tuple[Tensor, ...]:
    """The angles of same-kind fixed gates for weights w (H, P), in one matmul: one (H, G)
    tensor per angle of the gate (none for parameter-free gates)."""
    a_w = torch.as_tensor(np.stack([g.a_w for g in gates], 1), dtype=w.dtype,
                          device=w.device)  # (A, G, P)
    c = torch.as_tensor(np.stack([g.c for g in gates], 1), dtype=w.dtype, device=w.device)
    return tuple((torch.einsum("hp,agp->ahg", w, a_w) + c[:, None, :]).unbind(0))  # A × (H, G)


def one_qubit_products(slots, w: Tensor, dtype: torch.dtype) -> Tensor:
    """Per slot (a qubit, or a query's qubit) the product of its one-qubit fixed gates, applied
    in order, for weights w (H, P): (H, S, 2, 2). Slots are built side by side, one
    ``gate_matrix`` per gate kind and position, so the cost does not grow with the slot count."""
    h = w.shape[0]
    eye = torch.eye(2, dtype=dtype, device=w.device).expand(h, 2, 2)
    u = None
    for pos in range(max((len(gs) for gs in slots), default=0)):
        mats = [eye] * len(slots)
        at = {s: gs[pos] for s, gs in enumerate(slots) if len(gs) > pos}
        for name, gates in _by_name(at.values()).items():
            m = gate_matrix(name, _angles(gates, w), dtype=dtype, device=w.device)
            m = m if m.dim() == 4 else m.expand(h, len(gates), 2, 2)  # (H, G, 2, 2)
            it = iter(range(len(gates)))
            for s, g in at.items():
                if g.name == name:
                    mats[s] = m[:, next(it)]
        step = torch.stack(mats, 1)  # (H, S, 2, 2): this position's gate on every slot
        u = step if u is None else step @ u  # later gates act after earlier ones
    return torch.stack([eye] * len(slots), 1) if u is None else u


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


def product_measure(psi: Tensor, ru: Tensor, z: Tensor) -> Tensor:
    """Learned-basis readout in plain autograd: ψ (H, B, D), one-qubit query rotations
    R (H, K, n, 2, 2), Z-term signs z (D, M) -> Σ_i |((⊗_q R[h, k, q]) ψ)_i|² z[i, c] (H, B, K, M)."""
    h, b, d = psi.shape
    n = ru.shape[2]
    out = []
    for k in range(ru.shape[1]):
        amp = psi.reshape(h * b, d)
        for q in range(n):
            amp = apply_matrix(amp, ru[:, k, q].repeat_interleave(b, 0), (q,), n)  # (H·B, D)
        out.append((amp.real ** 2 + amp.imag ** 2) @ z.to(amp.real.dtype))  # (H·B, M)
    return torch.stack(out, 1).view(h, b, ru.shape[1], -1)  # (H, B, K, M)


def product_readout_ref(psi0: Tensor, delta: Tensor, u: Tensor, e: Tensor, ru: Tensor,
                        terms: tuple[tuple[int, ...], ...]) -> Tensor:
    """Reference of ``fused_readout.product_readout``, same arguments: ψ0 (H, B, D), relative
    input phases δ (H, n, T, B), U, e, query rotations R (H, K, n, 2, 2), Z terms -> readouts
    at every token (H, K, M, T, B): rotate by R, |amplitude|², signed sums."""
    n = delta.shape[1]
    bits = (torch.arange(2**n)[:, None] >> torch.arange(n)) & 1  # (D, n)
    z = torch.stack([(1 - 2 * bits[:, list(s)]).prod(-1) for s in terms], -1)  # (D, M)
    zero = torch.zeros_like(delta)
    psi, ys = psi0, []
    for dl in delta.unbind(2):  # (H, n, B)
        alpha = torch.stack([zero[:, :, 0], dl], -1).permute(0, 2, 1, 3)  # (H, B, n, 2)
        psi = product_step(psi, alpha, u, e)  # (H, B, D)
        ys.append(product_measure(psi, ru, z))  # (H, B, K, M)
    return torch.stack(ys).permute(1, 3, 4, 0, 2)  # (H, K, M, T, B)
