"""The hardware-compatible QLAM, evaluated through Estimator primitives (EstimatorQNN + TorchConnector).

Hardware-compatible means one quantum memory (layers=1, heads=1) read once, at the end of the
sequence (pool="last"): a QLAMClassifier of that shape already uses only the last state's readout,
so ``PrimitiveQLAM`` *is* that classifier (same parameters, same state dict, checkpoints move both
ways) with the quantum part swapped for a QNN on a backend:

    θ (B, T·m) = proj(LN(embed(x) + pos))           classical, upstream (input gradients)
    e (B, E)   = ⟨ψ_T(θ, w)| P_e |ψ_T(θ, w)⟩          EstimatorQNN: fixed Pauli set, see below
    y (B, K·M) = readout(e, basis angles)            classical, exact
    logits     = head(norm(h_T + MLP(...)))          classical

A damped memory (memory="damped") runs the damped cell (``circuits/damped.py``) on 2n qubits: the
QNN weights are the cell's weight angles then the damping angles φ = 2 asin √γ, bound from
``mix``, ``log_dt`` and ``log_rate`` through torch, and the Estimator must run mid-circuit resets
exactly (Aer's density-matrix method, or a device with dynamic circuits). The Pauli set below is
measured on the n system qubits; the ancillas are not read.

The learned bases U_k only rotate what is measured: U†ZU = n·(X, Y, Z) with
n = (-sin θ cos λ, sin θ sin λ, cos θ) for U(θ, φ, λ). So ⟨U†Z_qU⟩ = Σ_i n_i⟨σ_i⟩ and
⟨U†Z_aU ⊗ U†Z_bU⟩ = Σ_ij n_a,i n_b,j ⟨σ_i σ_j⟩: the QNN measures X, Y, Z of every qubit and the 9
Pauli pairs of every correlated pair, and the basis angles are trained classically at no circuit
cost. (``eval`` measures the K learned bases directly instead: K measurement settings.)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from qiskit.quantum_info import SparsePauliOp

from ..circuits.cell import CellTemplate
from ..circuits.damped import rate_angles
from ..circuits.sequence import SequenceTemplate
from .qlam import ModelConfig, QLAMClassifier

Tensor = torch.Tensor
PAULIS = "XYZ"


def hardware_problem(cfg: ModelConfig, kind: str = "qlam") -> str | None:
    """Why a model is not the hardware-compatible configuration (None when it is)."""
    if kind != "qlam":
        return f"model {kind!r} has no quantum circuit; only QLAM runs on primitives"
    bad = [f"{name}={getattr(cfg, name)}" for name, want in
           (("layers", 1), ("heads", 1), ("pool", "last")) if getattr(cfg, name) != want]
    if bad:
        return (f"this checkpoint is not hardware-compatible ({', '.join(bad)}); primitives run "
                "one memory read at the end: train with --layers 1 --heads 1 --pool last")
    return None


def pauli_observables(n: int, terms: Sequence[tuple[int, ...]]) -> list[SparsePauliOp]:
    """X, Y, Z of each single term's qubit and the 9 Pauli pairs of each pair term, in order, on
    ``n`` qubits (a damped circuit's 2n: identity on the ancillas)."""
    out = []
    for t in terms:
        if len(t) == 1:
            out += [SparsePauliOp.from_sparse_list([(p, [t[0]], 1.0)], n) for p in PAULIS]
        elif len(t) == 2:
            out += [SparsePauliOp.from_sparse_list([(p + q, [t[0], t[1]], 1.0)], n)
                    for p in PAULIS for q in PAULIS]
        else:
            raise ValueError(f"readout term {t} has more than two qubits")
    return out


def bloch_axes(r: Tensor, n: int) -> Tensor:
    """Readout angles r (3nK,) -> axes (K, n, 3) with U† Z U = n_x X + n_y Y + n_z Z."""
    a = r.view(-1, n, 3)  # (K, n, (θ, φ, λ))
    th, lam = a[..., 0], a[..., 2]
    return torch.stack([-torch.sin(th) * torch.cos(lam), torch.sin(th) * torch.sin(lam),
                        torch.cos(th)], dim=-1)


def pauli_readout(e: Tensor, r: Tensor, n: int, terms: Sequence[tuple[int, ...]]) -> Tensor:
    """Pauli expectations e (B, E) and readout angles r (3nK,) -> query readouts (B, K·M)."""
    axes = bloch_axes(r.to(e.dtype), n)  # (K, n, 3)
    cols, i = [], 0
    for t in terms:
        if len(t) == 1:
            cols.append(e[:, i:i + 3] @ axes[:, t[0]].T)  # (B, K)
            i += 3
        else:
            pair = e[:, i:i + 9].view(-1, 3, 3)  # (B, 3, 3) <σ_i^a σ_j^b>
            cols.append(torch.einsum("bij,ki,kj->bk", pair, axes[:, t[0]], axes[:, t[1]]))
            i += 9
    return torch.stack(cols, dim=-1).flatten(1)  # (B, K, M) -> (B, K·M), query-major


class PrimitiveQLAM(QLAMClassifier):
    """A hardware-compatible QLAMClassifier whose quantum memory runs on an Estimator."""

    def __init__(self, cfg: ModelConfig, *, cell: CellTemplate | None = None) -> None:
        problem = hardware_problem(cfg)
        if problem:
            raise ValueError(problem)
        super().__init__(cfg, cell=cell)
        layer = self.blocks[0].mixer
        self.damped = cfg.memory == "damped"
        """The memory is a density matrix: the circuit is the damped cell's, with resets."""
        self.selective = cfg.selective
        """Each token sets the damping angles: they are per-token inputs of the circuit."""
        self.num_qubits = layer.cell_template.num_qubits
        self.terms = layer.readout_template.terms
        self._qnn: list = []  # [BroadcastEstimatorQNN, TorchConnector]: kept out of state_dict
        self.cache_features = False
        """Reuse Pauli expectations for repeated (θ, w) (frozen circuit: --train-scope head)."""
        self._cache: dict[bytes, np.ndarray] = {}

    def attach(self, qnn: Any) -> None:
        """Run the quantum memory through ``qnn`` (a BroadcastEstimatorQNN) from now on."""
        from qiskit_machine_learning.connectors import TorchConnector

        # The connector's autograd function carries gradients; its own weight Parameter is not
        # used, the checkpoint's ``mix`` is passed instead so state dicts match the exact model.
        self._qnn = [qnn, TorchConnector(qnn, initial_weights=np.zeros(qnn.num_weights))]
        self._cache.clear()

    @property
    def qnn(self) -> Any:
        """The attached BroadcastEstimatorQNN (ValueError before ``attach``)."""
        if not self._qnn:
            raise ValueError("no Estimator attached; call attach() with a QNN first")
        return self._qnn[0]

    def freeze_circuit(self) -> None:
        """--train-scope head: freeze everything up to and including the circuit."""
        blk, layer = self.blocks[0], self.blocks[0].mixer
        frozen = [self.embed, blk.norm1, layer.proj]
        for p in [q for m in frozen for q in m.parameters()] + [layer.mix] + \
                ([layer.log_dt] if layer.log_dt is not None else []) + \
                ([layer.log_rate] if self.damped else []) + \
                (list(layer.select.parameters()) if self.selective else []) + \
                ([self.pos] if self.pos is not None else []):
            p.requires_grad_(False)
        self.cache_features = True

    def expectations(self, theta: Tensor, w: Tensor) -> Tensor:
        """Pauli expectations (B, E) of the final memory for angles θ (B, T·m), weights w (P,)."""
        from qiskit_machine_learning.connectors.torch_connector import _TorchNNFunction

        qnn = self.qnn
        if torch.is_grad_enabled() and (theta.requires_grad or w.requires_grad):
            # through TorchConnector: float32, gradients by the QNN's batched gradient
            return _TorchNNFunction.apply(theta, w, qnn, False)
        x = theta.detach().cpu().double().numpy()  # (B, T·m) float64: exact path for eval
        wv = w.detach().cpu().double().numpy()
        if not self.cache_features:
            return torch.as_tensor(qnn.forward(x, wv), dtype=torch.float64)
        keys = [row.tobytes() + wv.tobytes() for row in x]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo:
            for i, ev in zip(todo, qnn.forward(x[todo], wv)):
                self._cache[keys[i]] = ev
        return torch.as_tensor(np.stack([self._cache[k] for k in keys]), dtype=torch.float64)

    def circuit_weights(self) -> Tensor:
        """What the circuit's weight parameters bind (P,): the cell's weight angles Δ w, then, for
        a damped memory (not selective), the damping angles φ (n,), so gradients reach mix,
        log_dt, log_rate."""
        layer = self.blocks[0].mixer
        w = layer.mixing()[0]  # (P_cell,)
        if not self.damped or self.selective:
            return w
        return torch.cat([w, rate_angles(layer.rates()[0]).to(w.dtype)])

    def angles(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, d_input) -> residual stream h (B, T, d) and each token's circuit inputs
        (B, T, m): the cell's input angles θ, then with ``selective`` its damping angles φ_t."""
        h = self.embed_tokens(x)  # (B, T, d)
        blk = self.blocks[0]
        z = blk.norm1(h)
        theta = blk.mixer.input_angles(z)[..., 0, :]  # θ: the one memory's angles
        if self.selective:
            phi = rate_angles(blk.mixer.token_rates(z)[..., 0, :])  # (B, T, n)
            theta = torch.cat([theta, phi.to(theta.dtype)], -1)
        return h, theta

    def finish(self, h: Tensor, ev: Tensor) -> Tensor:
        """Residual stream h (B, T, d) and query readouts ev (B, K·M) -> logits (B, classes)."""
        blk = self.blocks[0]
        read = blk.mixer.out(ev.to(blk.mixer.out.weight.dtype))  # (B, d)
        z = h[:, -1] + blk.drop(blk.mixer.gated(read, blk.norm1(h[:, -1])))  # (B, d)
        z = z + blk.drop(blk.mlp(blk.norm2(z)))
        return self.head(self.norm(z))  # (B, classes)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d_input) -> logits (B, num_classes), the circuit evaluated by the QNN."""
        h, theta = self.angles(x)  # (B, T, d), (B, T, m)
        layer = self.blocks[0].mixer
        e = self.expectations(theta.flatten(1), self.circuit_weights())  # (B, E)
        return self.finish(h, pauli_readout(e, layer.basis[0], self.num_qubits, self.terms))


def sequence_template(model: PrimitiveQLAM, steps: int) -> SequenceTemplate:
    """The model's cell unrolled over ``steps`` tokens (after the |+>^n init block); a damped
    memory's is the damped cell on 2n qubits, weights = the cell's then the damping angles."""
    from ..circuits.damped import damped_sequence
    from ..circuits.sequence import qlam_sequence

    layer = model.blocks[0].mixer
    if not model.damped:
        return qlam_sequence(layer.cell_template, steps)
    # CRY has a four-term shift rule: its definition (two RY(±φ/2), two CX) has the two-term one
    qc = damped_sequence(layer.template, steps, selective=model.selective).decompose(
        gates_to_decompose=["cry"])
    inputs = next(p.vector for p in qc.parameters if p.name.startswith("x["))  # its x[t·m + j]
    damping = () if model.selective else tuple(layer.template.damping)  # else per-token inputs
    return SequenceTemplate(qc, inputs, (*layer.template.cell.weights, *damping), steps,
                            layer.cell_template)


def on_circuit(observables: Sequence[SparsePauliOp], width: int) -> list[SparsePauliOp]:
    """Memory observables (on its n qubits) on a ``width``-qubit sequence circuit: identity on
    a damped circuit's ancillas n..2n-1."""
    return [op.apply_layout(list(range(op.num_qubits)), num_qubits=width) for op in observables]


def attach_backend(model: PrimitiveQLAM, backend: Any, steps: int, *, transpile: Any = None,
                   runtime: Any = None, gradient: str = "shift", input_gradients: bool = True,
                   seed: int = 0, mode: Any = None, ledger: Any = None,
                   cache: bool = True) -> tuple[Any, Any]:
    """Transpile the T-step sequence for ``backend`` (a ``Backend``), build its Estimator and
    QNN, attach it. Returns (qnn, compiled). Observables are mapped with the ISA layout; exact
    runs use precision 0; a damped memory's resets get an Estimator that runs them exactly."""
    from ..backends.primitives.estimator import RuntimeOptions
    from ..backends.primitives.qnn import GRADIENTS, BroadcastEstimatorQNN
    from ..backends.primitives.transpile import TranspileOptions

    runtime = runtime or RuntimeOptions()
    tpl = sequence_template(model, steps)
    compiled = backend.transpile(tpl.circuit, transpile or TranspileOptions(seed=seed), cache=cache)
    estimator = backend.estimator(runtime, noise_model=compiled.noise_model, mode=mode,
                                  dynamic=compiled.dynamic)
    by_name = {p.name: p for p in compiled.circuit.parameters}
    grad = GRADIENTS[gradient](seed=seed) if gradient == "spsa" else GRADIENTS[gradient]()
    qnn = BroadcastEstimatorQNN(
        circuit=compiled.circuit, estimator=estimator,
        observables=compiled.map_observables(pauli_observables(tpl.circuit.num_qubits,
                                                                model.terms)),
        input_params=[by_name[p.name] for p in tpl.inputs],
        weight_params=[by_name[p.name] for p in tpl.weights], gradient=grad,
        input_gradients=input_gradients, precision=runtime.effective_precision, ledger=ledger)
    model.attach(qnn)
    return qnn, compiled
