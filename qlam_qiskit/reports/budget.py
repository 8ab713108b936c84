"""Hardware budget advisor: the longest sequence (and widest memory) above a success probability.

For a setting, the longest T with estimated success >= F comes from the per-token model when it
lies beyond the transpiled lengths (log success is linear in T there), else from a bisection over
real transpiles. A patch of P pixels per token turns an image of N pixels into N/P tokens (P must
divide N, as ``--patch`` requires), so the smallest dividing P with N/P <= T_max makes it fit.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable

from ..backends import Backend
from ..circuits.cell import CellConfig, CellTemplate
from .cost import transpile_costed, unrolled
from .scaling import LN10, Series, series, setting

IMAGES = (784, 1024)
"""Pixels of an MNIST (28x28) and a CIFAR-10 grayscale (32x32) image."""
CHECK_MAX = 1024
"""Longest T whose answer is re-checked by transpiling T and T+1 (~2 s at T = 784)."""


def patch_for(pixels: int, longest: int | None) -> int | None:
    """Smallest P dividing ``pixels`` with pixels/P <= longest (None if even P = pixels fails)."""
    if longest is None:
        return 1
    for p in range(1, pixels + 1):
        if pixels % p == 0 and pixels // p <= longest:
            return p
    return None


def _log10_at(se: Series, steps: int, idle: bool) -> float:
    """log10 success at ``steps`` by a real transpile with the series' layout (memoised)."""
    c = se.transpiled.get(steps)
    if c is None:
        s = se.setting
        _, c = transpile_costed(unrolled(s.template, steps), s.backend.qiskit_target,
                                optimization_level=s.optimization_level, initial_layout=se.layout)
        se.transpiled[steps] = c
    e = c.estimate
    return (e.log_success_idle if idle else e.log_success) / LN10


def longest(se: Series, min_fidelity: float, idle: bool = True) -> tuple[int | None, str]:
    """(longest T with success >= min_fidelity, how it was found); None T = no limit found."""
    key = "log10_success_idle" if idle else "log10_success"
    goal = math.log10(min_fidelity)
    lo_t, hi_t = se.fit_steps
    slope = se.per_token[key]
    at_hi = _log10_at(se, hi_t, idle)
    if at_hi >= goal:  # beyond the transpiled lengths: the per-token model
        if slope >= 0:
            return None, "no loss per token (the target reports no errors)"
        t = hi_t + math.floor((goal - at_hi) / slope)
        return t, "extrapolated"
    ok, bad = 0, hi_t  # bisection over transpiles: success(ok) >= goal > success(bad)
    while bad - ok > 1:
        mid = (ok + bad) // 2
        if _log10_at(se, mid, idle) >= goal:
            ok = mid
        else:
            bad = mid
    return ok, "transpiled"


def budget(backend: Backend, cell: CellConfig | CellTemplate, *, entanglement: str, level: int,
           min_fidelity: float, idle: bool = True, max_qubits: int = 12, min_steps: int = 1,
           transpile_max: int = 64, seed: int = 0,
           progress: Callable[[str], None] | None = None) -> dict:
    """The budget for ``cell`` on ``backend``: longest T, patch sizes, and the same per width n
    (a custom cell has one width: its own)."""
    if not 0 < min_fidelity < 1:
        raise ValueError(f"--min-fidelity {min_fidelity}: give a probability in (0, 1), e.g. 0.1")

    def one(n: int, check: bool) -> dict:
        base = cell if isinstance(cell, CellTemplate) else replace(cell, qubits=n)
        se = series(setting(backend, base, entanglement, level), [],
                    transpile_max=transpile_max, seed=seed)
        t, how = longest(se, min_fidelity, idle)
        key = "log10_success_idle" if idle else "log10_success"
        row = {"qubits": n, "longest_steps": t, "found_by": how, "layout": list(se.layout),
               "ops_2q_per_token": se.per_token["ops_2q"],
               "log10_success_per_token": se.per_token[key],
               **{f"patch_{p}": patch_for(p, t) for p in IMAGES}}
        if check and t is not None and 1 <= t <= CHECK_MAX:  # checked by transpiles at T, T+1
            row["check_log10_at"] = {str(t): _log10_at(se, t, idle),
                                     str(t + 1): _log10_at(se, t + 1, idle)}
        if progress:
            progress(f"n={n}: longest T {t} ({how})")
        return row

    custom = isinstance(cell, CellTemplate)
    width = cell.num_qubits if custom else cell.qubits
    main_row = one(width, True)
    widths = [main_row] if custom else []
    for n in () if custom else range(2, max_qubits + 1):
        try:
            widths.append(main_row if n == width else one(n, False))
        except ValueError as err:  # e.g. no chain of n coupled qubits: the widths end here
            widths.append({"qubits": n, "longest_steps": None, "found_by": str(err)})
            break
    fits = [w["qubits"] for w in widths if w.get("layout") is not None
            and (w["longest_steps"] is None or w["longest_steps"] >= min_steps)]
    return {"backend": backend.name, "optimization_level": level, "entanglement": entanglement,
            "estimate": "gates+readout+idle" if idle else "gates+readout",
            "min_fidelity": min_fidelity, "min_steps": min_steps, **main_row,
            "widest_qubits": max(fits) if fits else None, "widths": widths}
