"""Costs over sequence lengths T: transpile short sequences, extrapolate long ones per token.

Per (backend, optimisation level, entanglement) the layout is fixed first - the coupling chain for
``coupling``, else the one Qiskit chooses for the longest transpiled length - so every length is
routed from the same qubits. Lengths up to ``transpile_max`` are transpiled; longer ones use the
steady-state per-token cost measured between T = transpile_max/2 and transpile_max:

    m(T) = m(F) + (T - F) · (m(F) - m(F/2)) / (F/2),   F = transpile_max

for counts, depths, SWAPs, duration, idle time and the log success probabilities (a product of
per-gate factors is a sum of logs, so it is additive per token). Readout success is that of T = F.
Logical figures are exact at every T (the template is built, not fitted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable

from ..backends import Backend
from ..circuits.cell import CellConfig, CellTemplate, qlam_cell
from .cost import Costed, Logical, logical, transpile_costed, unrolled

LN10 = math.log(10.0)
CUSTOM_ENTANGLEMENTS = ("custom", "coupling")
"""What ``entanglement`` may be for a custom cell (its gates are fixed by its circuit)."""
LINEAR = ("isa_depth", "ops_1q", "ops_2q", "depth_2q", "swaps", "duration_s", "idle_s",
          "log_gates", "log_idle")


@dataclass(frozen=True)
class Setting:
    """One column group of a report: a backend, a pass-manager level and an entanglement."""

    backend: Backend
    optimization_level: int
    entanglement: str
    """ring, linear, full, none, or coupling (a natively coupled chain of the device)."""
    cell: CellConfig | CellTemplate
    """Cell with ``entanglement`` resolved (coupling -> ring/linear over the chain), or a custom
    cell circuit (circuits/custom.py), costed as it is."""
    layout: tuple[int, ...] | None = None
    """Fixed initial layout (coupling chain or a checkpoint's), else chosen by Qiskit."""

    @property
    def template(self) -> CellTemplate:
        """The cell circuit this setting costs."""
        return self.cell if isinstance(self.cell, CellTemplate) else qlam_cell(self.cell)

    @property
    def qubits(self) -> int:
        """Width of the cell."""
        return self.cell.num_qubits if isinstance(self.cell, CellTemplate) else self.cell.qubits


def setting(backend: Backend, base: CellConfig | CellTemplate, entanglement: str, level: int,
            layout: tuple[int, ...] | None = None) -> Setting:
    """Resolve ``entanglement`` for ``backend`` (coupling -> chain of device qubits as layout).

    A custom cell keeps its own two-qubit gates: ``entanglement`` is then "custom" (layout as
    given, else chosen by Qiskit) or "coupling" (laid out on a coupled chain of the device)."""
    size = backend.qiskit_target.num_qubits or 0
    n = base.num_qubits if isinstance(base, CellTemplate) else base.qubits
    if n > size and isinstance(base, CellTemplate):
        raise ValueError(f"the custom cell's {n} qubits are more than the {size} qubits of "
                         f"{backend.name}; choose a larger backend")
    if n > size:
        raise ValueError(f"--qubits {n} is more than the {size} qubits of "
                         f"{backend.name}; use --qubits {size} or fewer")
    if isinstance(base, CellTemplate):
        if entanglement not in CUSTOM_ENTANGLEMENTS:
            raise ValueError(f"entanglement {entanglement!r}: a custom cell brings its own "
                             f"two-qubit gates; use one of {CUSTOM_ENTANGLEMENTS}")
        if entanglement == "coupling":
            layout = tuple(backend.coupling_chain(n)[0])
        return Setting(backend, level, entanglement, base, layout)
    if entanglement == "coupling":
        chain, ring = backend.coupling_chain(base.qubits)
        cell = replace(base, entanglement="ring" if ring else "linear", pairs=None)
        return Setting(backend, level, entanglement, cell, tuple(chain))
    return Setting(backend, level, entanglement, replace(base, entanglement=entanglement,
                                                          pairs=None), layout)


@dataclass
class Series:
    """Everything a report shows for one Setting: rows per T and the per-token model."""

    setting: Setting
    rows: list[dict]
    layout: tuple[int, ...]
    layout_source: str
    fit_steps: tuple[int, int]
    per_token: dict[str, float]
    """Steady-state cost of one more token (counts, seconds, log10 success)."""
    intercept: dict[str, float]
    """m(T) ≈ intercept + per_token · T, fitted at ``fit_steps``."""
    transpile_s: float
    transpiled: dict[int, Costed] = field(default_factory=dict, repr=False)


def _metrics(c: Costed) -> dict[str, float]:
    e = c.estimate
    return {"isa_depth": c.isa_depth, "ops_1q": c.ops_1q, "ops_2q": c.ops_2q,
            "depth_2q": c.depth_2q, "swaps": c.swaps, "duration_s": e.duration_s,
            "idle_s": e.idle_s, "log_gates": e.log_gates, "log_idle": e.log_idle,
            "log_readout": e.log_readout}


def _row(s: Setting, steps: int, lg: Logical, m: dict[str, float], *, source: str,
         c: Costed | None, known: bool) -> dict:
    log_s = m["log_gates"] + m["log_readout"]
    log_si = log_s + m["log_idle"]
    ints = {k: int(round(m[k])) for k in ("isa_depth", "ops_1q", "ops_2q", "depth_2q", "swaps")}
    ints["depth_2q"] = min(ints["depth_2q"], ints["ops_2q"])  # separate fits must stay consistent
    return {"backend": s.backend.name, "optimization_level": s.optimization_level,
            "entanglement": s.entanglement, "qubits": s.qubits, "steps": steps,
            "source": source, "logical_depth": lg.depth, "logical_1q": lg.ops_1q,
            "logical_2q": lg.ops_2q, **ints,
            "layout": list(c.layout) if c else None, "final_layout": list(c.final) if c else None,
            "transpile_s": c.transpile_s if c else None,
            "success_gates": math.exp(m["log_gates"]), "success_readout": math.exp(m["log_readout"]),
            "success": math.exp(log_s), "success_idle": math.exp(log_si),
            "log10_success": log_s / LN10, "log10_success_idle": log_si / LN10,
            "duration_s": m["duration_s"], "idle_s": m["idle_s"], "errors_known": known}


def series(s: Setting, steps: Iterable[int], *, transpile_max: int = 64, seed: int = 0,
           logical_cache: dict | None = None) -> Series:
    """Rows for every T in ``steps`` on setting ``s`` (transpiled up to transpile_max, else fitted)."""
    if transpile_max < 2:
        raise ValueError(f"--transpile-max {transpile_max}: must be >= 2 (two lengths to fit)")
    steps = sorted(set(steps))
    cell: CellTemplate = s.template
    target, lvl = s.backend.qiskit_target, s.optimization_level
    hi, lo = transpile_max, transpile_max // 2
    done: dict[int, Costed] = {}
    layout, total = s.layout, 0.0
    source = "coupling chain" if s.entanglement == "coupling" else "checkpoint's layout"

    def run(t: int, fixed) -> Costed:
        _, c = transpile_costed(unrolled(cell, t), target, optimization_level=lvl, seed=seed,
                                initial_layout=fixed)
        return replace(c, steps=t)

    if layout is None:  # let Qiskit choose for the longest transpiled length, then keep it
        pilot = run(hi, None)
        total += pilot.transpile_s
        layout, source = pilot.layout, f"chosen by Qiskit at T={hi}"
    for t in sorted({lo, hi} | {t for t in steps if t <= hi}):
        done[t] = run(t, layout)
        total += done[t].transpile_s
    known = all(c.estimate.errors_known for c in done.values())
    m_lo, m_hi = _metrics(done[lo]), _metrics(done[hi])
    slope = {k: (m_hi[k] - m_lo[k]) / (hi - lo) for k in LINEAR}
    slope["log_readout"] = 0.0
    cache = logical_cache if logical_cache is not None else {}
    rows = []
    for t in steps:
        key = (s.cell if isinstance(s.cell, CellConfig) else id(s.cell), t)  # custom: by object
        if key not in cache:
            cache[key] = logical(cell, t)
        if t in done:
            rows.append(_row(s, t, cache[key], _metrics(done[t]), source="transpiled",
                             c=done[t], known=known))
        else:
            m = {k: m_hi[k] + (t - hi) * slope.get(k, 0.0) for k in m_hi}
            rows.append(_row(s, t, cache[key], m, source="extrapolated", c=None, known=known))
    per = {k: slope[k] for k in ("isa_depth", "ops_1q", "ops_2q", "depth_2q", "swaps",
                                 "duration_s", "idle_s")}
    per["log10_success"] = slope["log_gates"] / LN10
    per["log10_success_idle"] = (slope["log_gates"] + slope["log_idle"]) / LN10
    base = {k: m_hi[k] for k in per if k in m_hi}
    base["log10_success"] = (m_hi["log_gates"] + m_hi["log_readout"]) / LN10
    base["log10_success_idle"] = base["log10_success"] + m_hi["log_idle"] / LN10
    intercept = {k: base[k] - per[k] * hi for k in per}
    return Series(s, rows, tuple(layout), source, (lo, hi), per, intercept, total, done)
