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
from qiskit.transpiler import Target, TranspilerError, generate_preset_pass_manager

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


@dataclass(frozen=True)
class Shape:
    """Depth and gate counts of a circuit, read in one pass (barriers, measures etc. left out)."""

    depth: int
    depth_2q: int
    ops_1q: int
    ops_2q: int


def shape(circuit: QuantumCircuit) -> Shape:
    """Depth, 2-qubit depth and 1-/2-qubit gate counts in one pass over ``circuit.data``.

    Same numbers as ``circuit.depth()`` and ``circuit.depth(filter_function=<2-qubit gates>)``
    for circuits without classical bits, at a fraction of the cost on 100k-gate ISA circuits.
    """
    index = {q: i for i, q in enumerate(circuit.qubits)}
    clock = [0] * circuit.num_qubits  # per qubit: layers so far (all gates)
    clock2 = [0] * circuit.num_qubits  # per qubit: layers so far (2-qubit gates only)
    c1 = c2 = 0
    for ins in circuit.data:
        name = ins.name
        if name == "barrier":
            continue
        qs = [index[q] for q in ins.qubits]
        d = max(clock[q] for q in qs) + 1
        for q in qs:
            clock[q] = d
        if name in NOT_GATES:
            continue
        if len(qs) == 1:
            c1 += 1
        elif len(qs) == 2:
            c2 += 1
            d2 = max(clock2[q] for q in qs) + 1
            for q in qs:
                clock2[q] = d2
    return Shape(max(clock, default=0), max(clock2, default=0), c1, c2)


def logical(cell: CellTemplate, steps: int) -> Logical:
    """Logical depth and counts of init + ``steps`` cells (exact for every T: built, not fitted)."""
    sh = shape(unrolled(cell, steps))
    return Logical(sh.depth, sh.ops_1q, sh.ops_2q)


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
    try:
        isa = pm.run(circuit, callback=count_swaps)
    except TranspilerError as err:  # e.g. a disconnected generic coupling map
        raise ValueError(f"Qiskit could not transpile the cell for this target "
                         f"(optimization level {optimization_level}): "
                         f"{str(err).strip(chr(39)).splitlines()[0]}") from None
    seconds = time.perf_counter() - t0
    n = circuit.num_qubits
    if isa.layout is not None:
        layout = tuple(isa.layout.initial_index_layout(filter_ancillas=True))[:n]
        final = tuple(isa.layout.final_index_layout(filter_ancillas=True))[:n]
    else:
        layout = final = tuple(range(n))
    sh = shape(isa)
    return isa, Costed(steps=-1, isa_depth=sh.depth, ops_1q=sh.ops_1q, ops_2q=sh.ops_2q,
                       depth_2q=sh.depth_2q,
                       swaps=swaps[0], layout=layout, final=final, transpile_s=seconds,
                       estimate=estimate(isa, target, final))
