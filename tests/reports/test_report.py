"""``qlam-qiskit report`` / ``report budget``: counts known by hand, estimates against direct
products over the target, extrapolation against real transpiles, files written, bad input."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
import torch
from qiskit.circuit import QuantumCircuit

from qlam_qiskit.circuits.cell import CellConfig, qlam_cell
from qlam_qiskit.backends import generic_backend, resolve_backend
from qlam_qiskit.backends.primitives.generic import parse_coupling
from qlam_qiskit.models import ModelConfig
from qlam_qiskit.reports import (budget, estimate, idle_factor, logical, 
                                 patch_for, series, setting,
                                 transpile_costed, unrolled)
from qlam_qiskit.reports.cost import shape
from qlam_qiskit.reports.scaling import LN10

from clirunner import invoke

CZ = CellConfig(qubits=4, entangler="cz")
NOISE = "1q=1e-3,2q=1e-2,readout=2e-2,t1=1e-4,t2=8e-5,1q_time=3e-8,2q_time=7e-8,readout_time=1e-6"
PNG = b"\x89PNG\r\n\x1a\n"


def one_line_error(res, *needles: str) -> None:
    assert res.exit_code != 0
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, (TypeError, KeyError))
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def fez():
    return resolve_backend("fake_fez")


# ---- counts known by hand -------------------------------------------------------------------

def test_logical_counts_by_hand():
    n, cell = 4, qlam_cell(CZ)
    for t in (1, 5):
        lg = logical(cell, t)
        assert lg.ops_2q == n * t  # one CZ per ring pair per token
        assert lg.ops_1q == n + 3 * n * t  # H init; RZ(θ), RY(w), RZ(w) per qubit per token
    assert logical(cell, 1).depth == 1 + 3 + n  # H, three rotations, then the CZ chain around the ring


def test_shape_matches_qiskit(fez):
    qc = unrolled(qlam_cell(CellConfig(qubits=5, entangler="rzz")), 6)
    isa, _ = transpile_costed(qc, fez.qiskit_target, optimization_level=1)
    for circ in (qc, isa):
        sh = shape(circ)
        assert sh.depth == circ.depth()
        assert sh.depth_2q == circ.depth(filter_function=lambda i: i.operation.num_qubits == 2)
        assert sh.ops_2q == sum(1 for i in circ.data if i.operation.num_qubits == 2)
        assert sh.ops_1q == sum(1 for i in circ.data if i.operation.num_qubits == 1)
    assert shape(isa).ops_2q > shape(qc).ops_2q  # rzz = 2 CZ on Heron, plus routing


@pytest.mark.parametrize("level", [0, 1, 3])
def test_ring_on_ring_target_routes_without_swaps(level):
    n = CZ.qubits
    b = generic_backend("cz,rz,sx,x", f"ring:{n}", NOISE)
    se = series(setting(b, CZ, "ring", level), [1, 3, 8], transpile_max=8)
    for r in se.rows:
        assert r["source"] == "transpiled"
        assert r["swaps"] == 0 and r["ops_2q"] == n * r["steps"], r
    assert se.per_token["ops_2q"] == pytest.approx(n) and se.per_token["swaps"] == 0


def test_ring_on_line_target_needs_swaps():
    n = CZ.qubits
    b = generic_backend("cz,rz,sx,x", f"line:{n}", NOISE)
    se = series(setting(b, CZ, "ring", 1), [4, 8], transpile_max=8)
    for r in se.rows:
        assert r["swaps"] >= r["steps"]  # the closing pair is never adjacent on a line
        assert r["ops_2q"] > n * r["steps"]
    lin = series(setting(b, CZ, "linear", 1), [8], transpile_max=8)
    assert lin.rows[0]["swaps"] == 0 and lin.rows[0]["ops_2q"] == (n - 1) * 8


def test_coupling_entanglement_follows_the_device(fez):
    se = series(setting(fez, CellConfig(qubits=6, entangler="cz"), "coupling", 1), [16],
                transpile_max=16)
    r = se.rows[0]
    assert se.layout_source == "coupling chain" and r["swaps"] == 0
    pairs = se.setting.cell.entangling_pairs
    assert r["ops_2q"] == len(pairs) * 16
    couplings = {tuple(sorted(q)) for q in fez.qiskit_target["cz"]}
    for a, b in pairs:  # every cell pair sits on a native coupling of the chosen layout
        assert tuple(sorted((se.layout[a], se.layout[b]))) in couplings


# ---- estimates against direct products over the target --------------------------------------

def test_success_is_the_product_over_the_target(fez):
    isa, c = transpile_costed(unrolled(qlam_cell(CellConfig(qubits=5, entangler="cx")), 6),
                              fez.qiskit_target, optimization_level=1)
    tgt, p = fez.qiskit_target, 1.0
    for ins in isa.data:
        qs = tuple(isa.find_bit(q).index for q in ins.qubits)
        p *= 1.0 - tgt[ins.operation.name][qs].error
    read = math.prod(1.0 - tgt["measure"][(q,)].error for q in c.final)
    assert math.exp(c.estimate.log_gates) == pytest.approx(p, rel=1e-9)
    assert math.exp(c.estimate.log_success) == pytest.approx(p * read, rel=1e-9)
    assert sorted(c.final) == sorted(isa.layout.final_index_layout()[:5])
    # duration: Qiskit's own schedule length, plus the slowest readout of the measured qubits
    ro = max(tgt["measure"][(q,)].duration for q in c.final)
    assert c.estimate.duration_s == pytest.approx(isa.estimate_duration(tgt) + ro, rel=1e-9)
    assert c.estimate.idle_s > 0 and c.estimate.log_idle < 0  # routed circuits wait somewhere
    assert c.estimate.log_success_idle == pytest.approx(c.estimate.log_success + c.estimate.log_idle)


def test_success_on_generic_target_by_hand():
    n, t = CZ.qubits, 5
    b = generic_backend("cz,rz,sx,x", f"ring:{n}", NOISE)
    isa, c = transpile_costed(unrolled(qlam_cell(CZ), t), b.qiskit_target, optimization_level=1)
    n_sx = sum(1 for i in isa.data if i.operation.name in ("sx", "x"))  # rz is virtual: free
    want = 0.99 ** (n * t) * 0.999 ** n_sx * 0.98 ** n
    assert c.ops_2q == n * t
    assert math.exp(c.estimate.log_success) == pytest.approx(want, rel=1e-9)


def test_idle_charge_on_a_hand_schedule():
    b = generic_backend("cz,rz,sx,x", "line:2", NOISE)
    qc = QuantumCircuit(2)
    qc.x(0)
    qc.cz(0, 1)
    qc.x(0)
    qc.x(0)
    e = estimate(qc, b.qiskit_target, measured=(0, 1))
    # ALAP: q0 busy throughout; q1 waits in |0> (free) then idles 2 × 30 ns after the CZ
    assert e.duration_s == pytest.approx(3 * 3e-8 + 7e-8 + 1e-6)
    assert e.idle_s == pytest.approx(6e-8)
    assert e.log_idle == pytest.approx(math.log((1 + math.exp(-6e-8 / 1e-4)
                                                 + 2 * math.exp(-6e-8 / 8e-5)) / 4))
    assert math.exp(e.log_gates) == pytest.approx(0.999 ** 3 * 0.99)
    assert idle_factor(0.0, 1e-4, 1e-4) == 1.0 and idle_factor(1.0, None, None) == 1.0
    assert idle_factor(1e-5, 1e-4, 1e-4) < idle_factor(1e-6, 1e-4, 1e-4) < 1.0


# ---- extrapolation against a real transpile ---------------------------------------------------

@pytest.mark.parametrize("entanglement", ["ring", "coupling"])
def test_extrapolation_matches_a_real_transpile(fez, entanglement):
    """Per-token extrapolation from T = 8, 16 vs transpiling T = 96 with the same layout: counts
    within 2 %, log success (gates, and with idle) within 5 %."""
    se = series(setting(fez, CellConfig(qubits=6, entangler="cz"), entanglement, 1), [96],
                transpile_max=16)
    r = se.rows[0]
    assert r["source"] == "extrapolated" and r["transpile_s"] is None
    _, c = transpile_costed(unrolled(qlam_cell(se.setting.cell), 96), fez.qiskit_target,
                            optimization_level=1, initial_layout=se.layout)
    for key, got in (("ops_2q", c.ops_2q), ("ops_1q", c.ops_1q), ("isa_depth", c.isa_depth),
                     ("depth_2q", c.depth_2q)):
        assert r[key] == pytest.approx(got, rel=0.02, abs=2), key
    assert r["swaps"] == pytest.approx(c.swaps, rel=0.03, abs=2)
    assert r["log10_success"] == pytest.approx(c.estimate.log_success / LN10, rel=0.05)
    assert r["log10_success_idle"] == pytest.approx(c.estimate.log_success_idle / LN10, rel=0.05)
    assert r["duration_s"] == pytest.approx(c.estimate.duration_s, rel=0.03)


# ---- budget -------------------------------------------------------------------------------------

def test_patch_for():
    assert patch_for(784, 100) == 8 and patch_for(1024, 100) == 16
    assert patch_for(784, 784) == 1 and patch_for(784, 0) is None and patch_for(784, None) == 1
    assert patch_for(784, 1) == 784


def test_budget_is_consistent_and_monotone():
    b = generic_backend("cz,rz,sx,x", "full:7", NOISE)  # all-to-all: no routing noise in the trend
    for idle in (True, False):
        a = budget(b, CellConfig(qubits=4, entangler="cz"), entanglement="ring", level=1,
                   min_fidelity=0.2, idle=idle, max_qubits=7, transpile_max=16)
        t, goal = a["longest_steps"], math.log10(0.2)
        chk = a["check_log10_at"]
        assert t >= 1 and chk[str(t)] >= goal > chk[str(t + 1)]
        assert a["patch_784"] == patch_for(784, t) and 784 // a["patch_784"] <= t
        longest = [w["longest_steps"] for w in a["widths"]]
        assert [w["qubits"] for w in a["widths"]] == list(range(2, 8))
        assert all(x >= y for x, y in zip(longest, longest[1:])), longest
        assert a["widest_qubits"] == 7
    strict = budget(b, CellConfig(qubits=4, entangler="cz"), entanglement="ring", level=1,
                    min_fidelity=0.9, max_qubits=7, min_steps=3, transpile_max=16)
    ok = [w["qubits"] for w in strict["widths"] if w["longest_steps"] >= 3]
    assert strict["longest_steps"] < t and strict["widest_qubits"] == max(ok)


def test_budget_without_error_rates_has_no_limit():
    b = generic_backend("cz,rz,sx,x", "ring:4")
    a = budget(b, CZ, entanglement="ring", level=1, min_fidelity=0.5, max_qubits=4, transpile_max=8)
    assert a["longest_steps"] is None and "no errors" in a["found_by"]
    assert a["patch_784"] == 1 and a["widest_qubits"] == 4


def test_budget_on_a_device_checks_the_answer(fez):
    a = budget(fez, CellConfig(qubits=6, entangler="cz"), entanglement="coupling", level=1,
               min_fidelity=0.05, max_qubits=6, transpile_max=16)
    t = a["longest_steps"]
    assert a["found_by"] == "extrapolated" and t > 16
    chk = a["check_log10_at"]  # real transpiles at T and T+1 agree with the model's answer
    assert chk[str(t)] == pytest.approx(math.log10(0.05), abs=0.05)
    assert chk[str(t)] > chk[str(t + 1)]


# ---- CLI: files, schema, side by side, checkpoint, errors ------------------------------------------

def test_report_cli_writes_table_json_and_plots(tmp_path):
    out = tmp_path / "rep"
    res = invoke("report", "--backend", "fake_fez", "--coupling-map", "ring:6", "--noise", NOISE,
                 "--qubits", 6, "--entangler", "cz", "--steps", "1,4,16,40", "--transpile-max", 16,
                 "--out", out)
    assert res.exit_code == 0, (res.output, res.exception)
    assert "| backend | opt |" in res.output and "| fake_fez | 1 | ring | 40 | fit |" in res.output
    for name in ("depth_vs_T.png", "twoq_vs_T.png", "fidelity_vs_T.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    assert (out / "report.md").read_text().startswith("# QLAM circuit cost report")
    rep = json.loads((out / "report.json").read_text())
    assert rep["schema"] == "qlam-qiskit/report/1"
    assert rep["cell"]["qubits"] == 6 and rep["cell"]["entangler"] == "cz"
    assert [s["backend"] for s in rep["settings"]] == ["fake_fez", "generic[cz,rz,sx,x|ring:6]"]
    assert len(rep["rows"]) == 8
    keys = {"backend", "optimization_level", "entanglement", "steps", "source", "logical_depth",
            "isa_depth", "ops_1q", "ops_2q", "depth_2q", "swaps", "layout", "transpile_s",
            "success", "success_idle", "log10_success", "log10_success_idle", "duration_s"}
    for r in rep["rows"]:
        assert keys <= set(r)
        assert r["depth_2q"] <= r["ops_2q"] and r["depth_2q"] <= r["isa_depth"]
        assert r["source"] == ("transpiled" if r["steps"] <= 16 else "extrapolated")
        assert 0 < r["success_idle"] <= r["success"] <= 1
    gen = [r for r in rep["rows"] if r["backend"].startswith("generic")]
    assert all(r["swaps"] == 0 and r["ops_2q"] == 6 * r["steps"] for r in gen)
    fez = [r for r in rep["rows"] if r["backend"] == "fake_fez"]
    assert all(a["ops_2q"] < b["ops_2q"] and a["success"] > b["success"]
               for a, b in zip(fez, fez[1:]))


def test_report_side_by_side(tmp_path):
    res = invoke("report", "--coupling-map", "line:5", "--basis-gates", "cx,rz,sx,x", "--qubits", 4,
                 "--entanglement", "ring,linear,coupling", "--optimization-level", "0,2",
                 "--steps", "2,8", "--transpile-max", 4, "--out", tmp_path)
    assert res.exit_code == 0, (res.output, res.exception)
    rep = json.loads((tmp_path / "report.json").read_text())
    got = {(s["entanglement"], s["optimization_level"]) for s in rep["settings"]}
    assert got == {(e, o) for e in ("ring", "linear", "coupling") for o in (0, 2)}
    assert len(rep["rows"]) == 12
    assert "no error rate" in res.output  # a generic target without --noise says so
    by = {(r["entanglement"], r["optimization_level"], r["steps"]): r for r in rep["rows"]}
    assert by[("linear", 2, 8)]["swaps"] == 0 and by[("ring", 2, 8)]["swaps"] > 0


def test_report_takes_the_cell_from_a_checkpoint(tmp_path):
    cfg = asdict(ModelConfig(qubits=3, entangler="cx", encoding="ry_rz", entanglement="linear"))
    torch.save({"model_config": cfg, "model": {}, "train_config": {}, "data": {}, "epoch": 1,
                "backend": "statevector"}, tmp_path / "checkpoint.pt")
    assert cfg["heads"] > 1  # the default model: the report says it costs one memory
    res = invoke("report", "--checkpoint", tmp_path, "--coupling-map", "line:3", "--steps", "2",
                 "--out", tmp_path / "r")
    assert res.exit_code == 0, (res.output, res.exception)
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert (rep["cell"]["qubits"], rep["cell"]["entangler"], rep["cell"]["encoding"]) == (3, "cx", "ry_rz")
    assert rep["settings"][0]["entanglement"] == "linear"
    assert rep["rows"][0]["swaps"] == 0 and rep["rows"][0]["ops_2q"] == 2 * 2
    assert any("one memory" in n for n in rep["notes"])


def test_budget_cli(tmp_path):
    res = invoke("report", "budget", "--coupling-map", "ring:5", "--noise", NOISE, "--qubits", 4,
                 "--entangler", "cz", "--min-fidelity", 0.3, "--max-qubits", 5,
                 "--transpile-max", 16, "--out", tmp_path)
    assert res.exit_code == 0, (res.output, res.exception)
    a = json.loads((tmp_path / "budget.json").read_text())["answers"][0]
    assert f"longest T = {a['longest_steps']}" in res.output and "784 px: patch" in res.output
    assert [w["qubits"] for w in a["widths"]] == [2, 3, 4, 5]


@pytest.mark.parametrize("args,needles", [
    (["--backend", "fake_nosuch"], ["nosuch", "choose one of"]),
    (["--backend", "aer"], ["fake_<device>"]),
    ([], ["--backend"]),
    (["--coupling-map", "ring:6", "--steps", "1,x"], ["--steps", "e.g."]),
    (["--coupling-map", "ring:6", "--steps", "0,4"], ["--steps"]),
    (["--coupling-map", "ring:x"], ["--coupling-map", "line:N"]),
    (["--coupling-map", "0-1,1-1"], ["--coupling-map"]),
    (["--coupling-map", "ring:4", "--basis-gates", "cz,foo"], ["foo"]),
    (["--basis-gates", "cz,rz"], ["--coupling-map"]),
    (["--coupling-map", "ring:4", "--noise", "2q=abc"], ["--noise"]),
    (["--coupling-map", "ring:4", "--optimization-level", "4"], ["--optimization-level"]),
    (["--coupling-map", "ring:4", "--entanglement", "star"], ["star", "coupling"]),
    (["--coupling-map", "line:3", "--qubits", "5", "--entanglement", "coupling"], ["qubits"]),
    (["--coupling-map", "ring:4", "--checkpoint", "/nonexistent/run"], ["checkpoint"]),
    (["--coupling-map", "ring:4", "--qubits", "6"], ["--qubits 4"]),
])
def test_bad_input_is_one_line(args, needles, tmp_path):
    one_line_error(invoke("report", *args, "--out", tmp_path), *needles)


def test_budget_bad_input_is_one_line():
    one_line_error(invoke("report", "budget", "--coupling-map", "ring:4", "--min-fidelity", "1.5"),
                   "--min-fidelity")
    one_line_error(invoke("report", "budget", "--coupling-map", "ring:4", "--min-fidelity", "0.5",
                          "--qubits", "6"), "--qubits 4")
    one_line_error(invoke("report", "budget", "--backend", "aer", "--min-fidelity", "0.5"),
                   "fake_<device>")


def test_parse_coupling_forms():
    assert parse_coupling("grid:2x3").size() == 6
    assert len(parse_coupling("ring:5").get_edges()) == 10  # both directions
    assert set(parse_coupling("0-1,1-2").get_edges()) == {(0, 1), (1, 0), (1, 2), (2, 1)}
    with pytest.raises(ValueError):
        parse_coupling("0-2")  # qubit 1 missing


def test_report_keeps_a_checkpoints_device_layout(tmp_path, fez):
    from qlam_qiskit.backends.primitives.layouts import coupling_chain

    chain, ring = coupling_chain(fez.qiskit_target, 3)
    cfg = asdict(ModelConfig(qubits=3, layers=1, heads=1, entangler="cz",
                             entanglement="ring" if ring else "linear"))
    torch.save({"model_config": cfg, "model": {}, "train_config": {}, "data": {}, "epoch": 1,
                "backend": "fake_fez", "layout": list(chain)},
               tmp_path / "checkpoint.pt")
    res = invoke("report", "--checkpoint", tmp_path / "checkpoint.pt", "--backend", "fake_fez",
                 "--steps", "4", "--transpile-max", 4, "--out", tmp_path / "r")
    assert res.exit_code == 0, (res.output, res.exception)
    s = json.loads((tmp_path / "r" / "report.json").read_text())["settings"][0]
    assert s["layout"] == list(chain) and s["layout_source"] == "checkpoint's layout"
    row = json.loads((tmp_path / "r" / "report.json").read_text())["rows"][0]
    assert row["layout"] == list(chain) and row["swaps"] == 0


@pytest.mark.parametrize("level", [1, 3])
def test_shared_angles_cost_the_same_as_the_real_sequence(fez, level):
    """The report transpiles the cell repeated with shared angles; `run` transpiles qlam_sequence
    (fresh angles per token): the ISA costs must be the same."""
    from qlam_qiskit.circuits.sequence import qlam_sequence

    cell = qlam_cell(CellConfig(qubits=5, entangler="rzz"))
    _, a = transpile_costed(unrolled(cell, 8), fez.qiskit_target, optimization_level=level)
    _, b = transpile_costed(qlam_sequence(cell, 8).circuit, fez.qiskit_target, optimization_level=level)
    assert (a.ops_1q, a.ops_2q, a.isa_depth, a.swaps, a.layout) == \
        (b.ops_1q, b.ops_2q, b.isa_depth, b.swaps, b.layout)
    assert a.estimate.log_success_idle == pytest.approx(b.estimate.log_success_idle, rel=1e-9)
