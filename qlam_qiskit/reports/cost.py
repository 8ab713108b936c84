"""Cost metrics of a QLAM sequence circuit: logical (before transpiling) and on a target (ISA).

``transpile_costed`` runs Qiskit's preset pass manager once and reads everything from that run:
the ISA circuit's depth and gate counts, the SWAPs the layout/routing passes inserted (counted on
the DAG before basis translation turns them into 2-qubit gates), the chosen layout and the time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from qiskit.circuit import QuantumCircuit
from qiskit.transpiler import Target, generate_preset_pass_manager

from ..circuits.cell import CellTemplate, init_circuit
from .fidelity import Estimate, estimate

NOT_GATES = ("barrier", "measure", "reset", "delay")


@dataclass(frozen=True)
class Logical:
    """Depth and gate counts of the unrolled template (init + T cells), before transpiling."""

    depth: int
    ops_1q: int
    ops_2q: int


@dataclass(frozen=True)
class Costed:
    """One transpiled sequence circuit: ISA figures, layout, SWAPs, time and estimates."""

    steps: int
    isa_depth: int
    ops_1q: int
    ops_2q: int
    depth_2q: int
    swaps: int
    layout: tuple[int, ...]
    """Physical qubit of each template qubit before the first gate (the initial layout)."""
    final: tuple[int, ...]
    """Physical qubit holding each template qubit at the end (where it is read)."""
    transpile_s: float
    estimate: Estimate


def unrolled(cell: CellTemplate, steps: int) -> QuantumCircuit:
    """Init then ``steps`` copies of the cell; same gates as ``qlam_sequence`` (angles shared:
    only the structure matters for costs, and it is ~10x quicker to build)."""
    n = cell.circuit.num_qubits
    qc = QuantumCircuit(n, name=f"qlam_T{steps}")
    qc.compose(init_circuit(n), inplace=True)
    for _ in range(steps):
        qc.compose(cell.circuit, inplace=True)
    return qc


def gate_counts(circuit: QuantumCircuit) -> tuple[int, int]:
    """(1-qubit, 2-qubit) gate counts, leaving out barriers, measures, resets and delays."""
    c1 = c2 = 0
    for ins in circuit.data:
        if ins.operation.name in NOT_GATES:
            continue
        k = ins.operation.num_qubits
        c1 += k == 1
        c2 += k == 2
    return c1, c2


def depth_2q(circuit: QuantumCircuit) -> int:
    """Depth counting 2-qubit gates only."""
    return circuit.depth(filter_function=lambda ins: ins.operation.num_qubits == 2
                         and ins.operation.name not in NOT_GATES)


def logical(cell: CellTemplate, steps: int) -> Logical:
    """Logical depth and counts of init + ``steps`` cells (exact for every T: built, not fitted)."""
    qc = unrolled(cell, steps)
    return Logical(qc.depth(), *gate_counts(qc))


def transpile_costed(circuit: QuantumCircuit, target: Target, *, optimization_level: int,
                     seed: int = 0, initial_layout: Sequence[int] | None = None) -> tuple[QuantumCircuit, Costed]:
    """Transpile ``circuit`` for ``target`` with the preset pass manager and cost the result."""
    pm = generate_preset_pass_manager(optimization_level=optimization_level, target=target,
                                      seed_transpiler=seed,
                                      initial_layout=list(initial_layout) if initial_layout else None)
    swaps = [0]

    def count_swaps(**kw) -> None:  # SWAPs exist only between routing and basis translation
        swaps[0] = max(swaps[0], kw["dag"].count_ops().get("swap", 0))

    t0 = time.perf_counter()
    isa = pm.run(circuit, callback=count_swaps)
    seconds = time.perf_counter() - t0
    n = circuit.num_qubits
    if isa.layout is not None:
        layout = tuple(isa.layout.initial_index_layout(filter_ancillas=True))[:n]
        final = tuple(isa.layout.final_index_layout(filter_ancillas=True))[:n]
    else:
        layout = final = tuple(range(n))
    c1, c2 = gate_counts(isa)
    return isa, Costed(steps=-1, isa_depth=isa.depth(), ops_1q=c1, ops_2q=c2, depth_2q=depth_2q(isa),
                       swaps=swaps[0], layout=layout, final=final, transpile_s=seconds,
                       estimate=estimate(isa, target, final))
