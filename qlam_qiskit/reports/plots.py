"""PNG plots of a report: depth, 2-qubit gates and estimated success against T, one line per setting."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import save_figure  # noqa: E402
from .scaling import Series  # noqa: E402

PLOTS = {"depth_vs_T.png": ("isa_depth", "ISA circuit depth"),
         "twoq_vs_T.png": ("ops_2q", "2-qubit gates"),
         "fidelity_vs_T.png": ("log10_success", "estimated success probability")}


def _label(se: Series, many_levels: bool, many_ents: bool) -> str:
    s = se.setting
    parts = [s.backend.name]
    if many_levels:
        parts.append(f"O{s.optimization_level}")
    if many_ents:
        parts.append(s.entanglement)
    return " ".join(parts)


def write_plots(all_series: Sequence[Series], out: Path) -> list[Path]:
    """depth_vs_T.png, twoq_vs_T.png, fidelity_vs_T.png under ``out`` (log axes); paths written.

    Solid markers are transpiled lengths, hollow ones extrapolated; on the fidelity plot the
    dashed line of each colour adds the idle (T1/T2) charge.
    """
    levels = {se.setting.optimization_level for se in all_series}
    ents = {se.setting.entanglement for se in all_series}
    written = []
    for name, (key, ylabel) in PLOTS.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, se in enumerate(all_series):
            color = f"C{i % 10}"
            t = [r["steps"] for r in se.rows]
            if key.startswith("log10"):
                y = [10 ** r[key] for r in se.rows]
                yi = [10 ** r["log10_success_idle"] for r in se.rows]
                ax.plot(t, yi, "--", color=color, alpha=0.7)
            else:
                y = [r[key] for r in se.rows]
            label = _label(se, len(levels) > 1, len(ents) > 1)
            ax.plot(t, y, "-", color=color, label=label)
            for tt, yy, r in zip(t, y, se.rows):
                ax.plot([tt], [yy], "o", color=color,
                        mfc=color if r["source"] == "transpiled" else "white")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (tokens)")
        ax.set_ylabel(ylabel)
        if key.startswith("log10"):
            ax.set_ylim(top=1.5)
            ax.set_title("solid: gates + readout; dashed: + idle (T1/T2); hollow: extrapolated",
                         fontsize=8)
        else:
            ax.set_title("filled: transpiled; hollow: extrapolated per token", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        path = Path(out) / name
        save_figure(fig, path)
        plt.close(fig)
        written.append(path)
    return written
