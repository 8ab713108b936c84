"""The Qiskit circuits: cell configuration, unrolled sequence, parameter ordering, readout observables."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit.quantum_info import Statevector, random_statevector

from qlam_qiskit.circuits.cell import CellConfig, entangling_pairs, init_circuit, qlam_cell
from qlam_qiskit.circuits.readout import (qlam_readout, query_observables, readout_terms,
                                          z_observables)
from qlam_qiskit.circuits.sequence import qlam_sequence, sequence_parameter_values


@pytest.mark.parametrize("kwargs, match", [
    ({"qubits": 0}, "qubits must be >= 1"),
    ({"depth": -1}, "depth must be >= 0"),
    ({"entanglement": "star"}, "entanglement must be one of"),
    ({"entangler": "iswap"}, "entangler must be one of"),
    ({"encoding": "amplitude"}, "encoding must be one of"),
    ({"qubits": 3, "pairs": ((0, 0),)}, "not two distinct qubits"),
    ({"qubits": 3, "pairs": ((0, 3),)}, "not two distinct qubits"),
    ({"qubits": 3, "pairs": ((-1, 1),)}, "not two distinct qubits"),
])
def test_cell_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CellConfig(**kwargs)


def test_entangling_pairs_layouts():
    assert entangling_pairs(4, "ring") == ((0, 1), (1, 2), (2, 3), (3, 0))
    assert entangling_pairs(4, "linear") == ((0, 1), (1, 2), (2, 3))
    assert entangling_pairs(4, "full") == ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
    assert entangling_pairs(4, "none") == ()
    assert entangling_pairs(2, "ring") == ((0, 1),)  # no doubled edge on two qubits
    assert entangling_pairs(3, "ring") == ((0, 1), (1, 2), (2, 0))
    for layout in ("ring", "linear", "full", "none"):
        assert entangling_pairs(1, layout) == ()
    with pytest.raises(ValueError, match="unknown entanglement layout"):
        entangling_pairs(3, "star")
    assert CellConfig(qubits=5, entanglement="linear").entangling_pairs == entangling_pairs(5, "linear")
    explicit = ((2, 0), (1, 2))
    assert CellConfig(qubits=3, pairs=explicit).entangling_pairs == explicit


CONFIGS = [
    CellConfig(qubits=1, depth=1),
    CellConfig(qubits=3, depth=0),
    CellConfig(qubits=3, depth=2, entangler="rzz", entanglement="full"),
    CellConfig(qubits=4, depth=1, encoding="rz_zz", entangler="cx", entanglement="linear"),
    CellConfig(qubits=4, depth=2, encoding="ry_rz", entangler="rzz"),
    CellConfig(qubits=3, depth=1, encoding="rz_zz", entangler="rzz", pairs=((2, 0),)),
    CellConfig(qubits=2, depth=1, encoding="rz_zz", entangler="cz", entanglement="none"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_cell_parameter_counts(cfg):
    cell = qlam_cell(cfg)
    n, e = cfg.qubits, len(cfg.entangling_pairs)
    assert cfg.num_inputs == {"rz": n, "rz_zz": n + e, "ry_rz": 2 * n}[cfg.encoding]
    assert cfg.num_weights == cfg.depth * (2 * n + (e if cfg.entangler == "rzz" else 0))
    assert len(cell.inputs) == cfg.num_inputs and len(cell.weights) == cfg.num_weights
    assert cell.circuit.num_qubits == n
    assert set(cell.circuit.parameters) == set(cell.inputs) | set(cell.weights)
    assert cell.circuit.num_parameters == cfg.num_inputs + cfg.num_weights
    counts = cell.circuit.count_ops()
    if cfg.entangler != "rzz" and cfg.depth:
        assert counts.get(cfg.entangler, 0) == cfg.depth * e


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_sequence_template(cfg):
    cell = qlam_cell(cfg)
    steps = 3
    seq = qlam_sequence(cell, steps)
    assert len(seq.inputs) == steps * cfg.num_inputs
    assert seq.weights is cell.weights and seq.steps == steps and seq.cell is cell
    assert seq.circuit.num_parameters == steps * cfg.num_inputs + cfg.num_weights
    assert set(seq.circuit.parameters) == set(seq.inputs) | set(cell.weights)
    assert seq.circuit.count_ops().get("h", 0) == cfg.qubits  # the |+>^n init block
    assert qlam_sequence(cell, steps, init=False).circuit.count_ops().get("h", 0) == 0
    with pytest.raises(ValueError, match="steps must be >= 1"):
        qlam_sequence(cell, 0)


@pytest.mark.parametrize("cfg", CONFIGS[2:5], ids=str)
def test_sequence_parameter_values_ordering(cfg, rng):
    cell = qlam_cell(cfg)
    steps, m = 3, cfg.num_inputs
    seq = qlam_sequence(cell, steps)
    angles = rng.uniform(-np.pi, np.pi, (2, steps, m))  # a leading batch axis
    weights = rng.uniform(-np.pi, np.pi, cfg.num_weights)
    values = sequence_parameter_values(seq, angles, weights)
    assert values.shape == (2, seq.circuit.num_parameters)
    for b in range(2):
        positional = seq.circuit.assign_parameters(values[b])
        manual = {seq.inputs[t * m + j]: angles[b, t, j] for t in range(steps) for j in range(m)}
        manual.update({p: v for p, v in zip(cell.weights, weights)})
        by_name = seq.circuit.assign_parameters(manual)
        # and the unrolled circuit is init then the cell with token t's angles, t = 0..T-1
        sv = Statevector(init_circuit(cfg.qubits))
        for t in range(steps):
            step = {cell.inputs[j]: angles[b, t, j] for j in range(m)}
            step.update({p: v for p, v in zip(cell.weights, weights)})
            sv = sv.evolve(cell.circuit.assign_parameters(step))
        np.testing.assert_allclose(Statevector(positional).data, Statevector(by_name).data,
                                   atol=1e-12)
        np.testing.assert_allclose(Statevector(positional).data, sv.data, atol=1e-12)


@pytest.mark.parametrize("n, queries, correlators", [(1, 1, "none"), (3, 2, "pairs"),
                                                     (4, 3, "all"), (3, 1, "pairs")])
def test_query_observables_equal_rotate_then_measure_z(n, queries, correlators, rng):
    pairs = entangling_pairs(n, "ring")
    tpl = qlam_readout(n, queries, correlators=correlators, pairs=pairs)
    assert len(tpl.weights) == 3 * n * queries and tpl.num_queries == queries
    assert tpl.terms == readout_terms(n, correlators, pairs)
    assert tpl.num_outputs == queries * len(tpl.terms)
    values = rng.uniform(-np.pi, np.pi, len(tpl.weights))
    obs = query_observables(tpl, values)
    assert len(obs) == tpl.num_outputs
    zs = z_observables(n, tpl.terms)
    for s in range(3):
        psi = random_statevector(2**n, seed=int(rng.integers(2**31)))
        direct = np.array([psi.expectation_value(o) for o in obs])
        rotated = []
        for qc in tpl.circuits:
            bound = qc.assign_parameters({r: values[i] for i, r in enumerate(tpl.weights)
                                          if r in qc.parameters})
            after = psi.evolve(bound)
            rotated += [after.expectation_value(z) for z in zs]
        np.testing.assert_allclose(direct.imag, 0, atol=1e-12)
        np.testing.assert_allclose(direct.real, np.real(rotated), rtol=0, atol=1e-12)


def test_readout_terms():
    assert readout_terms(3, "none") == ((0,), (1,), (2,))
    assert readout_terms(3, "pairs", ((0, 1), (2, 0))) == ((0,), (1,), (2,), (0, 1), (0, 2))
    assert readout_terms(3, "all") == ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
    assert readout_terms(3, "pairs", ((1, 0), (0, 1))) == ((0,), (1,), (2,), (0, 1))
    with pytest.raises(ValueError, match="correlators must be one of"):
        readout_terms(3, "triples")
    with pytest.raises(ValueError, match="queries must be >= 1"):
        qlam_readout(3, 0)
