"""EstimatorQNN that sends one broadcast PUB per pass, with batched gradients of our own.

qiskit-machine-learning's EstimatorQNN sends one PUB per observable, and its default
ParamShiftEstimatorGradient shifts every gate occurrence of a shared weight in its own circuit:
B × K × 2 × (occurrences) separate simulator calls. Here the forward pass is one PUB (K observables
broadcast against B parameter sets) and the gradients are one PUB too:

* ``ShiftGradient``: exact parameter shift. Every parameterized gate occurrence g gets its own
  angle s_g = A[g] · values + c_g; f is evaluated at s_g ± π/2 for every occurrence touching a
  trainable parameter, all as one (B · 2G)-row PUB, and dF/dvalues = Σ_g A[g] (f+ - f-)/2.
  Circuits per sample: 2 × (parameter occurrences).
* ``SPSAGradient``: simultaneous perturbation: 2 circuits per sample, an unbiased but noisy estimate.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
from qiskit.circuit import Parameter, ParameterExpression, ParameterVector, QuantumCircuit
from qiskit.primitives import BaseEstimatorV2
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.neural_networks import EstimatorQNN

from .estimator import expectation_values
from ...errors import BackendError

#: gates exp(-i θ/2 P) (up to a global phase) whose derivative is the two-term shift rule
SHIFTABLE = {"rz", "rx", "ry", "rzz", "rxx", "ryy", "rzx", "p", "u1"}


class ShiftTable:
    """Each parameterized gate of a circuit as its own angle, affine in the circuit parameters."""

    def __init__(self, circuit: QuantumCircuit) -> None:
        params = list(circuit.parameters)
        index = {p: i for i, p in enumerate(params)}
        rows, consts, where = [], [], []
        for pos, ins in enumerate(circuit.data):
            op = ins.operation
            for j, angle in enumerate(op.params):
                if not (isinstance(angle, ParameterExpression) and angle.parameters):
                    continue
                if op.name not in SHIFTABLE or len(op.params) != 1:
                    raise BackendError(f"gate {op.name!r} at instruction {pos} has a parameterized "
                                      "angle but no two-term shift rule; transpile to rz/rx/ry/rzz")
                row = np.zeros(len(params))
                for par in angle.parameters:
                    grad = angle.gradient(par)
                    if isinstance(grad, ParameterExpression) and grad.parameters:
                        raise BackendError(f"angle {angle} at instruction {pos} is not affine")
                    row[index[par]] = float(grad)
                rows.append(row)
                consts.append(float(angle.bind({p: 0.0 for p in angle.parameters})))
                where.append((pos, j))
        self.a = np.array(rows).reshape(len(rows), len(params))  # (G, P)
        self.c = np.array(consts)  # (G,)
        s = ParameterVector("s", len(rows))
        qc = circuit.copy_empty_like()
        if isinstance(qc.global_phase, ParameterExpression):
            qc.global_phase = 0.0  # a global phase never changes an expectation value
        lookup = {w: g for g, w in enumerate(where)}
        for pos, ins in enumerate(circuit.data):
            if (pos, 0) in lookup:
                op = ins.operation.copy()
                op.params = [s[lookup[(pos, 0)]]]
                qc.append(op, ins.qubits, ins.clbits)
            else:
                qc.append(ins)
        self.circuit = qc
        """The circuit with one angle parameter s_g per occurrence."""

    @property
    def occurrences(self) -> int:
        """G, the number of parameterized gate occurrences."""
        return len(self.c)

    def touching(self, wrt: np.ndarray) -> np.ndarray:
        """Occurrences whose angle depends on any of the parameter indices ``wrt``."""
        return np.flatnonzero(np.any(self.a[:, wrt] != 0, axis=1))


class ShiftGradient:
    """Exact parameter-shift gradients of all samples and observables in one PUB."""

    name = "shift"

    def __init__(self) -> None:
        self._tables: dict[int, ShiftTable] = {}

    def table(self, circuit: QuantumCircuit) -> ShiftTable:
        """The (cached) shift table of ``circuit``."""
        key = id(circuit)
        if key not in self._tables:
            self._tables[key] = ShiftTable(circuit)
        return self._tables[key]

    def circuits_per_sample(self, circuit: QuantumCircuit, wrt: np.ndarray) -> int:
        """Parameter sets evaluated per sample for a gradient w.r.t. ``wrt``."""
        return 2 * len(self.table(circuit).touching(wrt))

    def __call__(self, estimator: BaseEstimatorV2, circuit: QuantumCircuit,
                 observables: Sequence[SparsePauliOp], values: np.ndarray, wrt: np.ndarray,
                 precision: float | None = None, ledger: Any = None) -> np.ndarray:
        """d<O_k>/d values[wrt]: values (B, P) -> (B, K, len(wrt))."""
        tab = self.table(circuit)
        occ = tab.touching(wrt)  # (G',)
        b, k = len(values), len(observables)
        if len(occ) == 0:
            return np.zeros((b, k, len(wrt)))
        base = values @ tab.a.T + tab.c  # (B, G) angle of every occurrence
        shift = np.zeros((2, len(occ), tab.occurrences))  # (2, G', G)
        shift[0, np.arange(len(occ)), occ] = np.pi / 2
        shift[1, np.arange(len(occ)), occ] = -np.pi / 2
        sets = base[:, None, None, :] + shift[None]  # (B, 2, G', G)
        evs = expectation_values(estimator, tab.circuit, observables,
                                 sets.reshape(-1, tab.occurrences), precision, ledger)  # (B*2G', K)
        evs = evs.reshape(b, 2, len(occ), k)
        diff = (evs[:, 0] - evs[:, 1]) / 2  # (B, G', K) d<O>/d s_g
        return np.einsum("bgk,gw->bkw", diff, tab.a[np.ix_(occ, wrt)])  # (B, K, W)


class SPSAGradient:
    """Simultaneous-perturbation estimate: 2 circuits per sample whatever the parameter count.

    Each perturbation is drawn from the seed and the values being differentiated, not from a
    running random stream: a run resumed from its checkpoint replays the same perturbations, so
    it trains exactly as an uninterrupted run and its device jobs are collected, not paid twice.
    """

    name = "spsa"

    def __init__(self, epsilon: float = 0.05, seed: int | None = 0) -> None:
        self.epsilon = epsilon
        self.seed = seed or 0

    def _signs(self, values: np.ndarray, width: int) -> np.ndarray:
        """±1 per sample and parameter (B, width), a function of the seed and ``values``."""
        digest = hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).digest()
        rng = np.random.default_rng([self.seed, *np.frombuffer(digest[:16], dtype=np.uint32)])
        return rng.choice([-1.0, 1.0], size=(len(values), width))

    def circuits_per_sample(self, circuit: QuantumCircuit, wrt: np.ndarray) -> int:
        """Always 2 (one + and one - perturbation)."""
        return 2

    def __call__(self, estimator: BaseEstimatorV2, circuit: QuantumCircuit,
                 observables: Sequence[SparsePauliOp], values: np.ndarray, wrt: np.ndarray,
                 precision: float | None = None, ledger: Any = None) -> np.ndarray:
        """SPSA estimate of d<O_k>/d values[wrt]: values (B, P) -> (B, K, len(wrt))."""
        b = len(values)
        delta = self._signs(values, len(wrt))  # (B, W)
        sets = np.repeat(values[:, None, :], 2, axis=1)  # (B, 2, P)
        sets[:, 0, wrt] += self.epsilon * delta
        sets[:, 1, wrt] -= self.epsilon * delta
        evs = expectation_values(estimator, circuit, observables, sets.reshape(2 * b, -1),
                                 precision, ledger).reshape(b, 2, -1)  # (B, 2, K)
        slope = (evs[:, 0] - evs[:, 1]) / (2 * self.epsilon)  # (B, K)
        return slope[:, :, None] * delta[:, None, :]  # (B, K, W)


GRADIENTS = {"shift": ShiftGradient, "spsa": SPSAGradient}


class BroadcastEstimatorQNN(EstimatorQNN):
    """EstimatorQNN whose forward and backward passes are one broadcast PUB each."""

    def __init__(self, *, circuit: QuantumCircuit, estimator: BaseEstimatorV2,
                 observables: Sequence[SparsePauliOp], input_params: Sequence[Parameter],
                 weight_params: Sequence[Parameter], gradient: Any,
                 input_gradients: bool = True, precision: float = 0.0,
                 ledger: Any = None) -> None:
        # default_precision 0.0: EstimatorQNN's 0.015625 makes Aer add Gaussian noise of that size
        super().__init__(circuit=circuit, estimator=estimator, observables=list(observables),
                         input_params=list(input_params), weight_params=list(weight_params),
                         input_gradients=input_gradients, default_precision=precision)
        self.batched_gradient = gradient
        self.ledger = ledger
        self.calls = {"forward": 0, "backward": 0, "parameter_sets": 0}

    def _forward(self, input_data: np.ndarray | None, weights: np.ndarray | None) -> np.ndarray:
        """(B, num_inputs), (num_weights,) -> (B, K) in one PUB."""
        values, _ = self._preprocess_forward(input_data, weights)  # (B, P) inputs then weights
        self.calls["forward"] += 1
        self.calls["parameter_sets"] += len(values)
        return expectation_values(self.estimator, self._circuit, self._observables, values,
                                  self._default_precision, self.ledger)

    def _backward(self, input_data: np.ndarray | None, weights: np.ndarray | None
                  ) -> tuple[np.ndarray | None, np.ndarray]:
        """Gradients (B, K, num_inputs) (or None) and (B, K, num_weights) in one PUB."""
        values, _ = self._preprocess_forward(input_data, weights)  # (B, P)
        ni = self._num_inputs
        wrt = np.arange(values.shape[1]) if self._input_gradients else \
            np.arange(ni, values.shape[1])
        self.calls["backward"] += 1
        self.calls["parameter_sets"] += len(values) * \
            self.batched_gradient.circuits_per_sample(self._circuit, wrt)
        grads = self.batched_gradient(self.estimator, self._circuit, self._observables, values,
                                      wrt, self._default_precision, self.ledger)  # (B, K, W)
        if self._input_gradients:
            return grads[..., :ni], grads[..., ni:]
        return None, grads
