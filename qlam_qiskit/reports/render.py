"""The report as Markdown (terminal and report.md) and as report.json."""

from __future__ import annotations

import math
from typing import Sequence

from .scaling import Series

SCHEMA = "qlam-qiskit/report/1"


def prob(log10: float) -> str:
    """A probability from its log10, readable even where exp would underflow (e.g. 4e-170)."""
    if log10 >= -2:
        return f"{10 ** log10:.3f}"
    e = math.floor(log10)
    m = 10 ** (log10 - e)
    if m >= 9.95:
        m, e = 1.0, e + 1
    return f"{m:.1f}e{e}"


def seconds(s: float | None) -> str:
    """Seconds with a readable unit (ns / µs / ms / s)."""
    if s is None:
        return "—"
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(s) >= f:
            return f"{s / f:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def series_table(all_series: Sequence[Series]) -> str:
    """One row per (backend, level, entanglement, T); extrapolated rows are marked ``fit``."""
    head = ("| backend | opt | entanglement | T | source | logical depth | ISA depth | 1q gates | "
            "2q gates | 2q depth | SWAPs | est. success | + idle (T1/T2) | duration | transpile |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for se in all_series:
        for r in se.rows:
            lines.append(
                f"| {r['backend']} | {r['optimization_level']} | {r['entanglement']} | {r['steps']} "
                f"| {'transpiled' if r['source'] == 'transpiled' else 'fit'} | {r['logical_depth']:,} "
                f"| {r['isa_depth']:,} | {r['ops_1q']:,} | {r['ops_2q']:,} | {r['depth_2q']:,} "
                f"| {r['swaps']:,} | {prob(r['log10_success'])} | {prob(r['log10_success_idle'])} "
                f"| {seconds(r['duration_s'])} | {seconds(r['transpile_s'])} |")
    return "\n".join(lines)


def settings_table(all_series: Sequence[Series]) -> str:
    """Per setting: the layout and the steady-state cost of one more token."""
    head = ("| backend | opt | entanglement | layout (physical qubits) | 2q/token | SWAPs/token | "
            "depth/token | log10 P/token | + idle | time/token | transpile total |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for se in all_series:
        s, p = se.setting, se.per_token
        lines.append(
            f"| {s.backend.name} | {s.optimization_level} | {s.entanglement} "
            f"| {','.join(map(str, se.layout))} ({se.layout_source}) | {p['ops_2q']:.2f} "
            f"| {p['swaps']:.2f} | {p['isa_depth']:.1f} | {p['log10_success']:.4f} "
            f"| {p['log10_success_idle']:.4f} | {seconds(p['duration_s'])} "
            f"| {seconds(se.transpile_s)} |")
    return "\n".join(lines)


def markdown(all_series: Sequence[Series], cell: dict, notes: Sequence[str] = ()) -> str:
    """The whole report: model line, per-T table, per-setting table and how to read them."""
    fit = sorted({se.fit_steps for se in all_series})
    line = (f"{cell['qubits']} qubits, depth {cell['depth']}, entangler {cell['entangler']}, "
            f"encoding {cell['encoding']}" if cell.get("cell", "qlam") == "qlam" else
            f"custom circuit, {cell['qubits']} qubits, {cell.get('inputs', '?')} input and "
            f"{cell.get('weights', '?')} weight angles")  # custom: circuits.custom.cell_info
    parts = [f"# QLAM circuit cost report\n\nCell: {line}.\n",
             series_table(all_series), "",
             "Per token (steady state, fitted between T = " +
             ", ".join(f"{a} and {b}" for a, b in fit) + "):\n",
             settings_table(all_series), "",
             "`fit`: extrapolated from the per-token cost, not transpiled (log success is additive "
             "per token). Est. success: Π(1 - gate error) × Π(1 - readout error) from the "
             "target; + idle also charges ALAP idle gaps against T1/T2. Duration: scheduled "
             "circuit + readout."]
    parts += [f"\nNote: {n}" for n in notes]
    return "\n".join(parts) + "\n"


def to_json(all_series: Sequence[Series], cell: dict, options: dict, wall_s: float,
            notes: Sequence[str] = ()) -> dict:
    """report.json: the options, the cell, per-setting models and every row."""
    return {
        "schema": SCHEMA, "cell": cell, "options": options, "wall_seconds": wall_s,
        "notes": list(notes),
        "settings": [{"backend": se.setting.backend.name, "backend_kind": se.setting.backend.kind,
                      "optimization_level": se.setting.optimization_level,
                      "entanglement": se.setting.entanglement,
                      "pairs": [list(p) for p in se.setting.cell.entangling_pairs],
                      "layout": list(se.layout), "layout_source": se.layout_source,
                      "fit_steps": list(se.fit_steps), "per_token": se.per_token,
                      "intercept": se.intercept, "transpile_seconds": se.transpile_s}
                     for se in all_series],
        "rows": [r for se in all_series for r in se.rows],
    }
