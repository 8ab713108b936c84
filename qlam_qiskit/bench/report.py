"""Turn a grid's run folders into the comparison table (Markdown + JSON) and its plots."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import save_figure, save_json, save_text  # noqa: E402
from .protocol import PAPER, Protocol  # noqa: E402
from .tune import load_best, study_key  # noqa: E402


def _load_runs(out: Path) -> list[dict]:
    """Every finished run under ``out/runs``: its result.json plus its per-epoch metrics."""
    runs = []
    for res in sorted((out / "runs").glob("*/result.json")):
        r = json.loads(res.read_text())
        metrics = res.parent / "metrics.jsonl"
        r["curve"] = [json.loads(line)["val_acc"] for line in metrics.read_text().splitlines()
                      ] if metrics.is_file() else []
        runs.append(r)
    return runs


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _learning_rates(r: dict, best: dict[str, dict], protocol: Protocol | None = None) -> dict:
    """The learning rates run ``r`` trained with, and its study's outcome if they were tuned."""
    cfg, model = r.get("train_config", {}), r["model_kind"]
    lr, circuit_lr = cfg.get("lr"), cfg.get("circuit_lr") if model == "qlam" else None
    study = best.get(study_key(r["data"]["task"], r["data"].get("downsample", 1), model, protocol))
    tuned = bool(study) and study["lr"] == lr and study.get("circuit_lr") == circuit_lr
    return {"lr": lr, "circuit_lr": circuit_lr, "tuned": tuned,
            "tune_val_acc": 100 * study["val_accuracy"] if tuned else None,
            "tune_trials": study["trials"] if tuned else 0}


def _rows(runs: list[dict], best: dict[str, dict] | None = None,
          protocol: Protocol | None = None) -> list[dict]:
    """One row per (task, T, model): mean ± std over seeds of accuracy, time and throughput, and
    the learning rates (tuned or the protocol's) it trained with."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["data"]["task"], r["seq_len"], r["model_kind"])].append(r)
    rows = []
    for (task, t, model), rs in groups.items():
        acc, acc_sd = _mean_std([100 * r["test_accuracy"] for r in rs])
        val, _ = _mean_std([100 * r["val_accuracy"] for r in rs])
        rows.append({"task": task, "seq_len": t, "model": model, "seeds": len(rs),
                     "test_acc": acc, "test_acc_std": acc_sd, "val_acc": val,
                     "params": rs[0]["num_params"], "d_model": rs[0]["model_config"]["d_model"],
                     "train_seconds": statistics.fmean(r["train_seconds"] for r in rs),
                     "sample_steps_per_s": statistics.fmean(r["sample_steps_per_s"] for r in rs),
                     "train_size": rs[0]["train_size"], "test_size": rs[0]["test_size"],
                     "epochs": rs[0]["epochs"], **_learning_rates(rs[0], best or {}, protocol),
                     "curve": [statistics.fmean(c) for c in zip(*(r["curve"] for r in rs))]})
    return rows


def markdown(rows: list[dict], protocol: Protocol) -> str:
    """The table as Markdown: accuracy per task, then the per-run details, then the paper's row."""
    cols = sorted({(r["task"], r["seq_len"]) for r in rows},
                  key=lambda c: (protocol.tasks.index(c[0]) if c[0] in protocol.tasks else 99, c[1]))
    models = [m for m in protocol.models if any(r["model"] == m for r in rows)]
    cell = {(r["task"], r["seq_len"], r["model"]): r for r in rows}
    head = "| model | params | " + " | ".join(f"{t} (T={n})" for t, n in cols) + " |"
    lines = [f"Protocol `{protocol.name}`: {protocol.about}", "",
             "Test accuracy (%), mean ± std over seeds (n):", "", head,
             "|" + "---|" * (len(cols) + 2)]
    for m in models:
        params = sorted({cell[c + (m,)]["params"] for c in cols if c + (m,) in cell})
        accs = [f"{cell[c + (m,)]['test_acc']:.1f} ± {cell[c + (m,)]['test_acc_std']:.1f} "
                f"({cell[c + (m,)]['seeds']})" if c + (m,) in cell else "—" for c in cols]
        lines.append(f"| {m} | {'/'.join(f'{p:,}' for p in params)} | " + " | ".join(accs) + " |")
    p = protocol
    tuning = (f"tuned on validation, the same budget for every model: {p.tune_trials} Optuna "
              f"trials of {p.tune_epochs} epoch(s) on {p.tune_limit_train or 'all'} training "
              f"images, seed {p.tune_seed}"
              + (f", on {p.tune_task} only, its rates used on every task" if p.tune_task else "")
              + " (tuned: the search's best val acc)"
              if p.tune_trials else f"the protocol's, not tuned (lr {p.lr:g}, circuit lr "
              f"{p.circuit_lr:g})")
    lines += ["", f"Per run (means over seeds). Learning rates: {tuning}.", "",
              "| task | T | model | d_model | params | seeds | lr | circuit lr | tuned | val acc | "
              "test acc | train s | sample-steps/s |", "|" + "---|" * 13]
    for r in sorted(rows, key=lambda r: (r["task"], r["seq_len"], -r["test_acc"])):
        lr = f"{r['lr']:.2e}" if r["lr"] is not None else "—"
        clr = f"{r['circuit_lr']:.2e}" if r["circuit_lr"] is not None else "—"
        tuned = f"yes ({r['tune_val_acc']:.1f}, {r['tune_trials']} trials)" if r["tuned"] else "no"
        lines.append(f"| {r['task']} | {r['seq_len']} | {r['model']} | {r['d_model']} | "
                     f"{r['params']:,} | {r['seeds']} | {lr} | {clr} | {tuned} | "
                     f"{r['val_acc']:.1f} | {r['test_acc']:.1f} ± {r['test_acc_std']:.1f} | "
                     f"{r['train_seconds']:.0f} | {r['sample_steps_per_s']:,.0f} |")
    lines += ["", "For reference, arXiv:2605.13833 (10-fold mean, full-length sequences, its own "
              "budget; not comparable to a downsampled or subset protocol):", "",
              "| model | smnist | sfmnist | scifar10 |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['smnist']} | {v['sfmnist']} | {v['scifar10']} |" for k, v in PAPER.items()]
    return "\n".join(lines) + "\n"


def _plots(rows: list[dict], out: Path) -> list[Path]:
    """learning_curves.png (val accuracy per epoch), and accuracy_vs_length.png when T varies."""
    written = []
    cols = sorted({(r["task"], r["seq_len"]) for r in rows})
    fig, axes = plt.subplots(1, len(cols), figsize=(4.5 * len(cols), 3.6), squeeze=False)
    for ax, (task, t) in zip(axes[0], cols):
        for r in sorted((r for r in rows if (r["task"], r["seq_len"]) == (task, t)),
                        key=lambda r: r["model"]):
            ax.plot(range(1, len(r["curve"]) + 1), [100 * v for v in r["curve"]],
                    marker="o", ms=3, label=r["model"])
        ax.set(title=f"{task} (T={t})", xlabel="epoch", ylabel="val accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    save_figure(fig, out / "learning_curves.png")
    plt.close(fig)
    written.append(out / "learning_curves.png")
    tasks = sorted({task for task, _ in cols})
    if any(len({t for k, t in cols if k == task}) > 1 for task in tasks):
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            for m in sorted({r["model"] for r in rows}):
                pts = sorted((r["seq_len"], r["test_acc"]) for r in rows
                             if r["task"] == task and r["model"] == m)
                ax.plot(*zip(*pts), marker="o", label=m)
            ax.set(title=task, xlabel="sequence length T", ylabel="test accuracy (%)", xscale="log")
            lengths = sorted({t for k, t in cols if k == task})
            ax.set_xticks(lengths, [str(t) for t in lengths])  # the measured T, not 10^k ticks
            ax.minorticks_off()
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=8)
        save_figure(fig, out / "accuracy_vs_length.png")
        plt.close(fig)
        written.append(out / "accuracy_vs_length.png")
    return written


def summarise(out: Path, protocol: Protocol) -> tuple[str, list[Path]]:
    """Write table.md, results.json and the plots for the finished runs under ``out``."""
    rows = _rows(_load_runs(out), load_best(out), protocol)
    if not rows:
        return "no finished runs yet\n", []
    md = markdown(rows, protocol)
    save_text(md, out / "table.md")
    save_json({"protocol": protocol.name, "rows": rows, "paper": PAPER}, out / "results.json")
    return md, [out / "table.md", out / "results.json", *_plots(rows, out)]
