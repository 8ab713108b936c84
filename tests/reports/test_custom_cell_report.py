"""Reports cost a custom cell circuit as they cost the QLAM cell it equals."""

from __future__ import annotations

import pytest

from qlam_qiskit.backends import generic_backend
from qlam_qiskit.circuits.cell import CellConfig, qlam_cell
from qlam_qiskit.circuits.custom import cell_from_circuit, cell_info
from qlam_qiskit.reports import budget, series, setting
from qlam_qiskit.reports.render import markdown

CZ = CellConfig(qubits=4, entangler="cz")
NOISE = "1q=1e-3,2q=1e-2,readout=2e-2,t1=1e-4,t2=8e-5,1q_time=3e-8,2q_time=7e-8,readout_time=1e-6"
KEYS = ("logical_depth", "logical_2q", "ops_2q", "swaps", "isa_depth", "log10_success", "qubits")


def test_custom_cell_costs_like_the_equal_qlam_cell():
    b = generic_backend("cz,rz,sx,x", "line:4", NOISE)
    custom = cell_from_circuit(qlam_cell(CZ).circuit)
    want = series(setting(b, CZ, "ring", 1), [2, 8, 16], transpile_max=8)
    got = series(setting(b, custom, "custom", 1, layout=want.layout), [2, 8, 16], transpile_max=8)
    assert got.setting.qubits == 4 and got.setting.template is custom
    for r, s in zip(got.rows, want.rows):
        assert r["entanglement"] == "custom" and r["source"] == s["source"]
        assert {k: r[k] for k in KEYS} == pytest.approx({k: s[k] for k in KEYS})
    text = markdown([got], cell_info(custom))
    assert "Cell: custom circuit, 4 qubits, 4 input and 8 weight angles." in text


def test_custom_cell_entanglement_and_budget():
    b = generic_backend("cz,rz,sx,x", "ring:4", NOISE)
    custom = cell_from_circuit(qlam_cell(CZ).circuit)
    with pytest.raises(ValueError, match="custom cell brings its own"):
        setting(b, custom, "ring", 1)
    chain = setting(b, custom, "coupling", 1)
    assert len(chain.layout) == 4 and chain.cell is custom
    a = budget(b, custom, entanglement="custom", level=1, min_fidelity=0.1, transpile_max=8)
    assert a["qubits"] == 4 and [w["qubits"] for w in a["widths"]] == [4]
    assert a["longest_steps"] == budget(b, CZ, entanglement="ring", level=1, min_fidelity=0.1,
                                        max_qubits=4, transpile_max=8)["longest_steps"]
