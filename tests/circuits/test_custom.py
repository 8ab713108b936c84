"""Custom cells: the naming convention, its one-line refusals, and QPY / OpenQASM 3 round trips."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import qpy
from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit
from qiskit.circuit.library import efficient_su2
from qiskit.quantum_info import Operator

from qlam_qiskit.circuits.cell import CellConfig, CellTemplate, qlam_cell
from qlam_qiskit.circuits.custom import (cell_from_bytes, cell_from_circuit, cell_info,
                                         cell_to_bytes, load_cell, save_cell)
from qlam_qiskit.errors import QLAMError


def su2_cell(n: int = 3) -> QuantumCircuit:
    """RZ(x[q]) on each qubit, then efficient_su2 (RY, RZ layers, CX chain) with weights w."""
    x = ParameterVector("x", n)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.rz(x[q], q)
    return qc.compose(efficient_su2(n, reps=1, parameter_prefix="w"))


def unitary(tpl: CellTemplate, values: np.ndarray) -> Operator:
    """The cell's unitary with inputs then weights bound to ``values`` in vector order."""
    params = list(tpl.inputs) + list(tpl.weights)
    return Operator(tpl.circuit.assign_parameters(dict(zip(params, values))))


def same_cell(a: CellTemplate, b: CellTemplate, rng) -> None:
    assert (len(a.inputs), len(a.weights)) == (len(b.inputs), len(b.weights))
    values = rng.uniform(-np.pi, np.pi, len(a.inputs) + len(a.weights))
    assert unitary(a, values).equiv(unitary(b, values))


def test_convention_finds_inputs_and_weights_in_index_order():
    qc = su2_cell(3)
    tpl = cell_from_circuit(qc)
    assert tpl.config is None and tpl.num_qubits == 3
    assert (tpl.inputs.name, len(tpl.inputs), tpl.weights.name, len(tpl.weights)) == ("x", 3, "w", 12)
    assert [p.name for p in tpl.inputs] == ["x[0]", "x[1]", "x[2]"]
    assert set(tpl.circuit.parameters) == set(tpl.inputs) | set(tpl.weights)
    assert tpl.entangling_pairs == ((1, 2), (0, 1))  # efficient_su2: reverse linear CX chain
    assert cell_info(tpl) == {"cell": "custom", "qubits": 3, "inputs": 3, "weights": 12,
                              "pairs": [[1, 2], [0, 1]], "gates": {"rz": 9, "ry": 6, "cx": 2}}


def test_qlam_cell_circuit_is_its_own_custom_cell(rng):
    ref = qlam_cell(CellConfig(qubits=4, entangler="rzz", encoding="rz_zz"))
    tpl = cell_from_circuit(ref.circuit)
    assert tpl.inputs.name == "θ" and tpl.weights.name == "w"
    assert list(tpl.inputs) == list(ref.inputs) and list(tpl.weights) == list(ref.weights)
    assert tpl.entangling_pairs == ref.entangling_pairs == ref.config.entangling_pairs


def test_pairs_are_distinct_in_first_appearance_order():
    x = ParameterVector("x", 3)
    qc = QuantumCircuit(3)
    qc.rz(x[0], 0), qc.rz(x[1], 1), qc.rz(x[2], 2)
    qc.cx(2, 1), qc.barrier(), qc.cz(1, 2), qc.rzz(0.3, 0, 1), qc.cx(1, 0)
    assert cell_from_circuit(qc).entangling_pairs == ((2, 1), (0, 1))


def test_plain_names_become_vectors_in_index_order(rng):
    a, b, c, w0 = (Parameter(s) for s in ("x_1", "_x_0_", "theta_2", "w_0"))
    qc = QuantumCircuit(2)
    qc.rz(a, 0), qc.rz(b, 1), qc.ry(w0, 0), qc.cx(0, 1)
    tpl = cell_from_circuit(qc)
    assert [p.name for p in tpl.inputs] == ["x[0]", "x[1]"] and len(tpl.weights) == 1
    want = QuantumCircuit(2)
    want.rz(tpl.inputs[1], 0), want.rz(tpl.inputs[0], 1), want.ry(tpl.weights[0], 0), want.cx(0, 1)
    same_cell(tpl, CellTemplate(None, want, tpl.inputs, tpl.weights), rng)
    qc.rz(c, 1)  # θ-like theta_2 next to x: two input vectors
    with pytest.raises(QLAMError, match="both look like inputs"):
        cell_from_circuit(qc)


def test_explicit_vectors_override_the_convention():
    x = ParameterVector("x", 2)
    qc = QuantumCircuit(2)
    qc.rz(x[0], 0), qc.rz(x[1], 1)
    qc = qc.compose(efficient_su2(2, reps=1))  # library default prefix θ: not a weight by name
    with pytest.raises(QLAMError, match="parameter_prefix='w'"):
        cell_from_circuit(qc)
    tpl = cell_from_circuit(qc, weights="θ")
    assert (tpl.inputs.name, tpl.weights.name, len(tpl.weights)) == ("x", "θ", 8)
    a = ParameterVector("a", 2)
    other = qc.assign_parameters(dict(zip(x, a)))
    tpl = cell_from_circuit(other, inputs=a, weights="θ")
    assert list(tpl.inputs) == list(a)


def test_a_cell_without_weights_is_allowed():
    x = ParameterVector("x", 2)
    qc = QuantumCircuit(2)
    qc.rz(x[0], 0), qc.rx(x[1], 1), qc.cz(0, 1)
    tpl = cell_from_circuit(qc)
    assert len(tpl.inputs) == 2 and len(tpl.weights) == 0
    assert len(cell_from_bytes(cell_to_bytes(tpl)).weights) == 0


def _gap() -> QuantumCircuit:
    x = ParameterVector("x", 3)
    qc = QuantumCircuit(1)
    qc.rz(x[0], 0), qc.rz(x[2], 0)
    return qc


def _dup() -> QuantumCircuit:
    qc = QuantumCircuit(1)
    qc.rz(Parameter("x_0"), 0), qc.rz(Parameter("_x_0_"), 0)
    return qc


def _measured() -> QuantumCircuit:
    qc = su2_cell(2)
    qc.measure_all()
    return qc


def _stranger() -> QuantumCircuit:
    qc = su2_cell(2)
    qc.rx(Parameter("a"), 0)
    return qc


@pytest.mark.parametrize("make, kwargs, needles", [
    (_stranger, {}, ["'a'", "neither an input", "rename"]),
    (lambda: efficient_su2(2, parameter_prefix="w"), {}, ["no input parameters", "rz(x[q], q)"]),
    (lambda: QuantumCircuit(2), {}, ["no input parameters"]),
    (_gap, {}, ["not x[1]", "0..1"]),
    (_dup, {}, ["x_0", "_x_0_", "x[0]"]),
    (_measured, {}, ["measure", "remove"]),
    (lambda: su2_cell(2), {"inputs": "a"}, ["inputs='a'", "no parameter"]),
    (lambda: su2_cell(2), {"inputs": "w"}, ["'x[0]'", "input (w[i])", "pass weights="]),
    (lambda: su2_cell(2), {"inputs": ParameterVector("x", 5)}, ["5 elements", "uses 2"]),
    (lambda: su2_cell(2), {"inputs": "w", "weights": "x"}, ["not be named 'x'"]),
])
def test_refusals_are_one_line_and_name_the_fix(make, kwargs, needles):
    with pytest.raises(QLAMError) as err:
        cell_from_circuit(make(), **kwargs)
    msg = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_qpy_file_and_bytes_round_trip(tmp_path, rng):
    tpl = cell_from_circuit(su2_cell(3))
    for back in (cell_from_bytes(cell_to_bytes(tpl)), load_cell(save_cell(tpl, tmp_path / "c.qpy"))):
        assert back.circuit == tpl.circuit and back.config is None
        assert [p.name for p in back.inputs] == [p.name for p in tpl.inputs]
        assert back.entangling_pairs == tpl.entangling_pairs
        same_cell(tpl, back, rng)
    a = ParameterVector("a", 3)  # roles by explicit name survive through the QPY metadata
    odd = cell_from_circuit(tpl.circuit.assign_parameters(dict(zip(tpl.inputs, a))), inputs=a)
    back = cell_from_bytes(cell_to_bytes(odd))
    assert back.inputs.name == "a" and len(back.weights) == 12


def test_qpy_written_by_qiskit_loads_by_convention(tmp_path, rng):
    with open(tmp_path / "plain.qpy", "wb") as f:
        qpy.dump(su2_cell(2), f)
    same_cell(load_cell(tmp_path / "plain.qpy"), cell_from_circuit(su2_cell(2)), rng)


def test_openqasm3_round_trip(tmp_path, rng):
    tpl = cell_from_circuit(qlam_cell(CellConfig(qubits=3, entangler="rzz")).circuit)  # θ, w
    text = save_cell(tpl, tmp_path / "c.qasm3").read_text()
    assert "input float[64] _x_0_;" in text and "_w_0_" in text  # vectors written as x, w
    back = load_cell(tmp_path / "c.qasm3")
    assert back.inputs.name == "x" and len(back.inputs) == 3 and len(back.weights) == 9
    same_cell(tpl, back, rng)


def test_openqasm3_exported_by_qiskit_and_by_hand(tmp_path, rng):
    from qiskit import qasm3

    (tmp_path / "su2.qasm").write_text(qasm3.dumps(su2_cell(3)))  # _x_0_, _w_0_, ...
    same_cell(load_cell(tmp_path / "su2.qasm"), cell_from_circuit(su2_cell(3)), rng)
    (tmp_path / "hand.qasm").write_text(
        'OPENQASM 3.0;\ninclude "stdgates.inc";\ninput float[64] x_1;\ninput float[64] x_0;\n'
        "input float[64] w_0;\nqubit[2] q;\nrz(x_0) q[0];\nrz(2*x_1 + 0.5) q[1];\n"
        "ry(w_0) q[0];\ncx q[0], q[1];\n")
    tpl = load_cell(tmp_path / "hand.qasm")
    want = QuantumCircuit(2)
    want.rz(tpl.inputs[0], 0), want.rz(2 * tpl.inputs[1] + 0.5, 1), want.ry(tpl.weights[0], 0)
    want.cx(0, 1)
    same_cell(tpl, CellTemplate(None, want, tpl.inputs, tpl.weights), rng)
    assert tpl.entangling_pairs == ((0, 1),)


def test_file_errors_are_one_line(tmp_path):
    two = tmp_path / "two.qpy"
    with open(two, "wb") as f:
        qpy.dump([su2_cell(2), su2_cell(2)], f)
    (tmp_path / "junk.qpy").write_bytes(b"not qpy at all")
    (tmp_path / "junk.qasm").write_text("OPENQASM 3.0;\nthis is not qasm;\n")
    (tmp_path / "cell.txt").write_text("")
    cases = [(tmp_path / "missing.qpy", "does not exist"), (tmp_path / "cell.txt", ".qpy"),
             (two, "2 circuits"), (tmp_path / "junk.qpy", "not readable QPY"),
             (tmp_path / "junk.qasm", "not readable OpenQASM 3")]
    for path, needle in cases:
        with pytest.raises(QLAMError) as err:
            load_cell(path)
        assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(QLAMError, match=".qasm"):
        save_cell(cell_from_circuit(su2_cell(2)), tmp_path / "cell.json")
    with pytest.raises(QLAMError, match="not readable QPY"):
        cell_from_bytes(b"\x00garbage")
