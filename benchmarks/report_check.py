"""Check ``qlam-qiskit report`` figures against Qiskit's own transpiler on the real sequence circuit.

For each backend and T, transpiles ``qlam_sequence(cell, T).circuit`` (distinct parameters per token,
as ``run`` builds it) with the preset pass manager, once with Qiskit's own free layout (what a
``run`` would do) and once with the report's fixed layout, and prints 2-qubit counts and the
estimated success next to the report's row (transpiled or extrapolated).

Usage: python benchmarks/report_check.py [--level 1] [--entangler rzz] [--steps 16,64,784]
"""

from __future__ import annotations

import argparse
import math
import time

from qiskit.transpiler import generate_preset_pass_manager

from qlam_qiskit.circuits.cell import CellConfig, qlam_cell
from qlam_qiskit.circuits.sequence import qlam_sequence
from qlam_qiskit.reports import estimate, resolve_report_backend, series, setting
from qlam_qiskit.reports.cost import shape


def direct(circuit, target, level, layout):
    """Qiskit's transpile of ``circuit``: (2q gates, log10 success, log10 with idle, seconds)."""
    pm = generate_preset_pass_manager(optimization_level=level, target=target, seed_transpiler=0,
                                      initial_layout=list(layout) if layout else None)
    t0 = time.perf_counter()
    isa = pm.run(circuit)
    sec = time.perf_counter() - t0
    n = circuit.num_qubits
    e = estimate(isa, target, isa.layout.final_index_layout()[:n])
    return shape(isa).ops_2q, e.log_success / math.log(10), e.log_success_idle / math.log(10), sec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="fake_fez,fake_torino,fake_brisbane")
    ap.add_argument("--level", type=int, default=1)
    ap.add_argument("--entangler", default="rzz")
    ap.add_argument("--qubits", type=int, default=6)
    ap.add_argument("--steps", default="16,64,784")
    a = ap.parse_args()
    steps = [int(s) for s in a.steps.split(",")]
    cfg = CellConfig(qubits=a.qubits, entangler=a.entangler)
    print("| backend | T | report (source): 2q, log10 P, + idle | Qiskit, report's layout | "
          "Qiskit, free layout | free transpile s |\n|---|---|---|---|---|---|")
    for name in a.backends.split(","):
        b = resolve_report_backend(name)
        se = series(setting(b, cfg, "ring", a.level), steps)
        for r in se.rows:
            qc = qlam_sequence(qlam_cell(cfg), r["steps"]).circuit
            fixed = direct(qc, b.target, a.level, se.layout)
            free = direct(qc, b.target, a.level, None)
            print(f"| {name} | {r['steps']} | {r['ops_2q']}, {r['log10_success']:.2f}, "
                  f"{r['log10_success_idle']:.2f} ({r['source']}) | {fixed[0]}, {fixed[1]:.2f}, "
                  f"{fixed[2]:.2f} | {free[0]}, {free[1]:.2f}, {free[2]:.2f} | {free[3]:.2f} |")


if __name__ == "__main__":
    main()
