"""Every Qiskit standard gate, custom gates, boxes and library circuits compiled and run by the
engine, held to ``qiskit.quantum_info.Statevector`` (complex128, 1e-10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from qiskit.circuit import Gate, ParameterVector, QuantumCircuit
from qiskit.circuit.library import (PauliEvolutionGate, UnitaryGate, efficient_su2,
                                    get_standard_gate_name_mapping, n_local, real_amplitudes)
from qiskit.quantum_info import SparsePauliOp, Statevector, random_statevector, random_unitary

from qlam_qiskit.backends.engine import CircuitProgram, SequenceEngine
from qlam_qiskit.backends.engine.compile import compile_gates
from qlam_qiskit.backends.engine.gates import GATES
from qlam_qiskit.backends.engine.product import product_form
from qlam_qiskit.circuits.cell import CellConfig, CellTemplate

QISKIT = get_standard_gate_name_mapping()
TOL = 1e-10


def kernels_for(qc: QuantumCircuit, th, w) -> list[str]:
    """Every kernel that applies to the cell qc (all of them run through the engine)."""
    prog = CircuitProgram(qc, list(th), list(w))
    if prog.kinds != ["diag", "fixed"]:
        return ["auto", "steps"]
    extra = ["product", "fused"] if product_form(prog) is not None else []
    return ["auto", "dense", "dense-adjoint", "steps"] + extra


def check(qc: QuantumCircuit, th, w, rng, kernels: list[str] | None = None, steps: int = 2,
          heads: int = 2, batch: int = 2, truth: QuantumCircuit | None = None) -> list[str]:
    """Run qc as the cell over ``steps`` tokens from random states with every kernel; compare
    every state with Statevector evolving the bound circuit (``truth`` when given: the same
    unitary in a form Statevector takes). Returns the kernels run."""
    n = qc.num_qubits
    cell = CellTemplate(CellConfig(qubits=n), qc, list(th), list(w))
    theta = rng.uniform(-math.pi, math.pi, (steps, heads, batch, len(th)))
    wv = rng.uniform(-math.pi, math.pi, (heads, len(w)))
    psi0 = np.stack([[random_statevector(2**n, seed=int(rng.integers(2**31))).data
                      for _ in range(batch)] for _ in range(heads)])  # (H, B, D)
    want = np.empty((steps, heads, batch, 2**n), dtype=complex)
    for h in range(heads):
        for b in range(batch):
            sv = Statevector(psi0[h, b])
            for t in range(steps):
                bound = (truth or qc).assign_parameters({**dict(zip(th, theta[t, h, b])),
                                              **dict(zip(w, wv[h]))}, strict=False)
                sv = sv.evolve(bound)
                want[t, h, b] = sv.data
    kernels = kernels or kernels_for(qc, th, w)
    args = (torch.as_tensor(theta), torch.as_tensor(wv), torch.as_tensor(psi0))
    for kernel in kernels:
        eng = SequenceEngine(cell, None, dtype="complex128", kernel=kernel)
        got = eng.run(*args).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=kernel)
        last = eng.run(*args, all_states=False).numpy()
        np.testing.assert_allclose(last, want[-1], rtol=0, atol=TOL, err_msg=kernel)
    return kernels


def affine(rng, th, w):
    """A random angle a·θ_i + b·w_j + c."""
    i, j = int(rng.integers(len(th))), int(rng.integers(len(w)))
    return float(rng.uniform(-2, 2)) * th[i] + float(rng.uniform(-2, 2)) * w[j] \
        + float(rng.uniform(-1, 1))


def add_gate(qc: QuantumCircuit, name: str, params, rng) -> None:
    """Append standard gate ``name`` with ``params`` on random distinct qubits."""
    k = GATES[name].num_qubits
    qubits = [int(q) for q in rng.permutation(qc.num_qubits)[:k]]
    qc.append(QISKIT[name].base_class(*params) if params else QISKIT[name], qubits)


@pytest.mark.parametrize("seed", range(3))
def test_every_standard_gate_with_affine_angles_matches_statevector(seed):
    """One 4-qubit cell holding every standard gate, in random order, each angle a random affine
    map of inputs and weights, and a parameterized global phase."""
    rng = np.random.default_rng(seed)
    th, w = ParameterVector("θ", 3), ParameterVector("w", 4)
    qc = QuantumCircuit(4)
    for name in rng.permutation(sorted(GATES)):
        add_gate(qc, str(name), [affine(rng, th, w) for _ in range(GATES[name].num_angles)], rng)
    qc.global_phase = 0.5 * th[1] - w[2] + 0.25
    assert len({g.name for g in compile_gates(qc, list(th), list(w))}) == len(GATES)
    assert check(qc, th, w, rng) == ["auto", "steps"]


@pytest.mark.parametrize("seed", range(2))
def test_every_standard_gate_in_a_diag_then_fixed_cell(seed):
    """Every diagonal gate with input angles, then every gate with weight angles: the
    (diag, fixed) shape, run on the dense kernels and segment by segment."""
    rng = np.random.default_rng(10 + seed)
    th, w = ParameterVector("θ", 4), ParameterVector("w", 5)
    qc = QuantumCircuit(4)
    diag = [g for g in GATES if GATES[g].diagonal and GATES[g].num_angles == 1]
    assert {"rz", "p", "u1", "cp", "crz", "cu1", "rzz", "global_phase"} <= set(diag)
    for name in diag:
        add_gate(qc, name, [2 * th[int(rng.integers(4))] - 0.5 * w[0] + 0.3], rng)
    for name in rng.permutation(sorted(GATES)):
        n_ang = GATES[name].num_angles
        add_gate(qc, str(name), [float(rng.uniform(-1, 1)) * w[int(rng.integers(5))] + 0.2
                                 for _ in range(n_ang)], rng)
    qc.global_phase = 0.7
    assert CircuitProgram(qc, list(th), list(w)).kinds == ["diag", "fixed"]
    assert "dense-adjoint" in check(qc, th, w, rng)


def test_product_form_with_weighted_global_phase_and_new_one_qubit_gates():
    """r, u, and a weight-dependent global phase keep a cell in product form; every product
    kernel matches Statevector."""
    rng = np.random.default_rng(3)
    th, w = ParameterVector("θ", 3), ParameterVector("w", 4)
    qc = QuantumCircuit(3, global_phase=w[3] - 0.2)
    for q in range(3):
        qc.rz(th[q], q)
    qc.r(w[0], w[1] + 0.3, 0)
    qc.u(w[2], 0.1, w[0], 1)
    qc.sxdg(2)
    qc.append(QISKIT["cs"], [0, 2])
    qc.ccz(0, 1, 2)
    qc.rx(w[3], 2)
    assert product_form(CircuitProgram(qc, list(th), list(w))) is not None
    assert "fused" in check(qc, th, w, rng)


def test_constant_phase_on_a_cell_of_only_non_diagonal_input_gates():
    rng = np.random.default_rng(4)
    th, w = ParameterVector("θ", 2), ParameterVector("w", 1)
    qc = QuantumCircuit(2, global_phase=0.9)
    qc.rx(th[0], 0)
    qc.append(QISKIT["xx_plus_yy"].base_class(th[1], w[0]), [0, 1])
    assert CircuitProgram(qc, list(th), list(w)).kinds == ["gates"]
    check(qc, th, w, rng)
    qc = QuantumCircuit(2, global_phase=0.9)  # nothing but a phase
    check(qc, [], [], rng)


def test_custom_gates_boxes_and_definitions_are_inlined():
    """A parameterized sub-circuit gate (with its own global phase), a controlled custom gate, a
    box, a sub-circuit instruction, a Pauli evolution and a unitary: compiled from their
    definitions, on permuted qubits."""
    rng = np.random.default_rng(5)
    th, w = ParameterVector("θ", 2), ParameterVector("w", 3)
    sub_p = ParameterVector("a", 2)
    sub = QuantumCircuit(2, global_phase=sub_p[0] / 2)
    sub.rx(sub_p[0], 0)
    sub.cx(0, 1)
    sub.append(QISKIT["rzx"].base_class(sub_p[1]), [1, 0])
    small = QuantumCircuit(1)
    small.ry(0.3, 0)
    small.h(0)

    def build(box: bool) -> QuantumCircuit:
        qc = QuantumCircuit(4)
        qc.append(sub.to_gate(), [3, 1])
        qc.assign_parameters({sub_p[0]: 2 * th[0] + w[0], sub_p[1]: w[1] - 0.4}, inplace=True)
        qc.append(small.to_gate().control(2), [0, 2, 1])
        body = QuantumCircuit(4)
        body.rzz(th[1], 0, 3)
        body.append(QISKIT["iswap"], [2, 0])
        if box:  # Statevector does not take control flow: the truth has the body inline
            with qc.box():
                qc.compose(body, inplace=True)
        else:
            qc.compose(body, inplace=True)
        qc.append(sub.assign_parameters([w[2], 0.5]).to_instruction(), [2, 0])
        qc.append(PauliEvolutionGate(SparsePauliOp(["XY", "ZZ"], [0.5, -1.0]), time=w[2]),
                  [1, 3])
        qc.append(UnitaryGate(random_unitary(4, seed=7)), [3, 0])
        return qc

    qc = build(box=True)
    assert "box" in {ins.operation.name for ins in qc.data}
    gates = compile_gates(qc, list(th), list(w))
    assert {g.name for g in gates} <= set(GATES) and "global_phase" in {g.name for g in gates}
    check(qc, th, w, rng, truth=build(box=False))


def test_custom_gate_named_like_a_standard_gate_runs_its_definition():
    """A custom gate called 'h' whose definition is an X is not mistaken for Qiskit's H."""
    impostor = Gate("h", 1, [])
    body = QuantumCircuit(1)
    body.x(0)
    impostor.definition = body
    qc = QuantumCircuit(2)
    qc.append(impostor, [1])
    assert [g.name for g in compile_gates(qc, (), ())] == ["x"]
    check(qc, [], [], np.random.default_rng(6))


@pytest.mark.parametrize("library", ["efficient_su2", "real_amplitudes", "n_local"])
def test_library_circuits_as_mixing_blocks(library):
    """RZ inputs, then a Qiskit library ansatz with all its parameters as weights."""
    rng = np.random.default_rng(8)
    n = 3
    mix = {"efficient_su2": lambda: efficient_su2(n, reps=2),
           "real_amplitudes": lambda: real_amplitudes(n, reps=2, entanglement="full"),
           "n_local": lambda: n_local(n, ["ry", "rz"], "cz", entanglement="linear", reps=2),
           }[library]()
    th = ParameterVector("x", n)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.rz(th[q], q)
    qc.compose(mix, inplace=True)
    kernels = check(qc, th, list(mix.parameters), rng, steps=3)
    assert "dense" in kernels and ("fused" in kernels) == (library == "n_local")


@pytest.mark.parametrize("library", ["efficient_su2", "real_amplitudes", "n_local"])
def test_library_circuits_with_inputs_among_their_parameters(library):
    """The ansatz itself as the cell: its first rotation layer takes the inputs (non-diagonal
    input gates, run segment by segment), the rest are weights; also wrapped as one gate."""
    rng = np.random.default_rng(9)
    n = 3
    qc = {"efficient_su2": lambda: efficient_su2(n, reps=1),
          "real_amplitudes": lambda: real_amplitudes(n, reps=1),
          "n_local": lambda: n_local(n, "rx", "cz", reps=1)}[library]()
    params = list(qc.parameters)
    th, w = params[:n], params[n:]
    assert check(qc, th, w, rng) == ["auto", "steps"]
    wrapped = QuantumCircuit(n)
    wrapped.append(qc.to_gate(), range(n))
    check(wrapped, th, w, rng, kernels=["auto"])
