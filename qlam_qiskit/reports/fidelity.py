"""Success-probability and duration estimates of an ISA circuit from its target's calibration.

Models (all log-additive, so per-token figures extrapolate linearly in T):

* gates: P_gates = Π_ops (1 - ε_op), ε_op = ``target[name][qargs].error`` (0 where unreported).
* readout: P_read = Π_{measured q} (1 - ε_measure(q)); the n memory qubits are read at the end,
  where routing left them (``layout.final_index_layout``).
* idle: the circuit is scheduled ALAP with the target's gate durations (qubits wait in |0> before
  their first gate, which costs nothing). Every gap a qubit spends waiting after that - between two
  of its gates, and for measured qubits from their last gate to the readout - is charged the
  success probability of the Pauli-twirled amplitude+phase damping channel,
  p_I(t) = (1 + e^{-t/T1} + 2 e^{-t/T2}) / 4  (≈ exp(-t/(4 T1) - t/(2 T2)) for short t).
  Gate errors already include decoherence during gates, so only idle time is charged.
* duration: the ALAP schedule's length (equal to ``QuantumCircuit.estimate_duration``) plus the
  longest readout of the measured qubits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from qiskit.circuit import QuantumCircuit
from qiskit.transpiler import Target

SKIP = ("barrier",)
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "ps": 1e-12}


@dataclass(frozen=True)
class Estimate:
    """Log success probabilities (natural log) and timing of one ISA circuit on one target."""

    log_gates: float
    log_readout: float
    log_idle: float
    duration_s: float
    """Scheduled circuit length + readout, seconds (0 when the target reports no durations)."""
    idle_s: float
    """Idle time charged to T1/T2, summed over qubits, seconds."""
    errors_known: bool
    """False when some operation had no error in the target (counted as error-free)."""

    @property
    def log_success(self) -> float:
        """log of gates × readout success."""
        return self.log_gates + self.log_readout

    @property
    def log_success_idle(self) -> float:
        """log of gates × readout × idle success (the decoherence-aware estimate)."""
        return self.log_success + self.log_idle


def _props(target: Target, name: str, qargs: tuple[int, ...]):
    try:
        return target[name][qargs]
    except KeyError:
        return None


def idle_factor(t: float, t1: float | None, t2: float | None) -> float:
    """p_I of an idle of ``t`` seconds: (1 + e^{-t/T1} + 2 e^{-t/T2}) / 4 (1 where T1/T2 unknown)."""
    if t <= 0:
        return 1.0
    e1 = math.exp(-t / t1) if t1 else 1.0
    e2 = math.exp(-t / t2) if t2 else 1.0
    return (1.0 + e1 + 2.0 * e2) / 4.0


def estimate(isa: QuantumCircuit, target: Target, measured: Sequence[int]) -> Estimate:
    """Gate, readout and idle success of ``isa`` (qubits = target qubits) and its duration."""
    index = {q: i for i, q in enumerate(isa.qubits)}
    log_g, known = 0.0, True
    ops = []  # (qubit indices, duration s) in circuit order
    for ins in isa.data:
        name = ins.name  # (not ins.operation: building 100k Python gate objects costs seconds)
        if name in SKIP:
            continue
        qs = tuple(index[q] for q in ins.qubits)
        p = _props(target, name, qs)
        err = p.error if p is not None else None
        if err is None:
            known = known and name == "delay"  # a delay has no error of its own
        elif err > 0:
            log_g += math.log1p(-min(err, 1.0 - 1e-300))
        if name == "delay":
            op = ins.operation
            dur = float(op.duration) * (target.dt or 0.0 if op.unit == "dt" else UNITS[op.unit])
        else:
            dur = p.duration if p is not None and p.duration is not None else 0.0
        ops.append((qs, dur))
    # ALAP = ASAP on the reversed circuit; rev[q]: reversed time at which q became free
    rev: dict[int, float] = {}
    gaps: dict[int, list[float]] = {}
    for q in measured:
        rev[q] = 0.0
        gaps[q] = []
    for qs, dur in reversed(ops):
        start = max(rev.get(q, 0.0) for q in qs)
        for q in qs:
            if q in rev:
                gaps[q].append(start - rev[q])
            else:
                gaps[q] = []
            rev[q] = start + dur
    length = max(rev.values(), default=0.0)
    props = target.qubit_properties
    log_i, idle = 0.0, 0.0
    for q, gs in gaps.items():
        qp = props[q] if props is not None and q < len(props) else None
        t1, t2 = (getattr(qp, "t1", None), getattr(qp, "t2", None)) if qp is not None else (None, None)
        for g in gs:
            if g > 0:
                idle += g
                log_i += math.log(idle_factor(g, t1, t2))
    log_r, read = 0.0, 0.0
    for q in measured:
        p = _props(target, "measure", (q,))
        if p is None or p.error is None:
            known = False
        elif p.error > 0:
            log_r += math.log1p(-min(p.error, 1.0 - 1e-300))
        if p is not None and p.duration:
            read = max(read, p.duration)
    return Estimate(log_g, log_r, log_i, length + read, idle, known)
