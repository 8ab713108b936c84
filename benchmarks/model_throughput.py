"""Whole-model training throughput: QLAM's default classifier against every baseline, and against a
previous version of this repository's QLAM, measured side by side in one run.

What one step is, for every model: one batch of B sequences of T tokens (random pixels) through the
classifier (embedding, 2 residual blocks, mean pool, head), cross-entropy, ``backward()``, gradient
clipping and an AdamW step: what ``training/loop.py`` does per batch. Models: the QLAM default
(``ModelConfig()`` with the task preset: 2 layers × 16 memories × 3 qubits, d_model 32, positions)
and every baseline of ``models/baselines.py`` at the QLAM's parameter count
(``bench.grid.matched_width``); T ∈ {196, 784, 1024} read as the tasks the bench protocols use
(smnist at 2×2 and 1×1, grayscale scifar10). ``--previous DIR`` adds the QLAM of another checkout
(``git worktree add DIR <commit>``), imported from DIR in its own processes.

Every (model, T) point runs in a fresh process (so peak RSS is that point's own) with the thread
count fixed by ``--threads`` (torch, numba, OpenMP, MKL, OpenBLAS); one warmup step (which also
compiles kernels), then ``--steps`` timed steps, median. Points are interleaved (every point once,
then every point again, ``--repeats`` rounds) and the table shows the median over rounds, so a
burst of load from other processes hits all points alike. The machine's load average is recorded
around every point; rows measured while other processes competed for the cores are marked.

Run:  python benchmarks/model_throughput.py --threads 2 --previous /tmp/qlam-prev [--out rows.json]
      python benchmarks/model_throughput.py --profile [--previous DIR]   # one QLAM step, by op
      add --previous-preset to time this checkout on the previous checkout's QLAM preset too
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POINTS = {196: ("smnist", 2, False), 784: ("smnist", 1, False), 1024: ("scifar10", 1, True)}
"""T -> (task, downsample, gray): the sequence lengths the bench protocols train on."""
MODELS = ("qlam", "lstm", "gru", "transformer", "ssm", "urnn")
OTHER_CORES = 0.3
"""Cores kept busy by other processes above which a point's times count as contaminated."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads per process (default: 2)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default: 32, the "
                   "full-length presets')")
    p.add_argument("--seq", default="196,784,1024", help="sequence lengths (default: all three)")
    p.add_argument("--models", default=",".join(MODELS),
                   help="models (default: all; 'frame' adds the frame every model shares, with "
                        "identity mixers: what no mixer can go below)")
    p.add_argument("--previous", default=None, metavar="DIR",
                   help="a checkout of an earlier commit whose QLAM is timed alongside")
    p.add_argument("--previous-models", default="qlam", metavar="M,M",
                   help="models timed from --previous too, each beside this checkout's "
                        "(default: qlam)")
    p.add_argument("--previous-preset", action="store_true",
                   help="also time this checkout's QLAM on --previous's task preset (the row "
                        "qlam@previous-preset): the same model on both engines, when the preset "
                        "itself has changed between the two")
    p.add_argument("--steps", type=int, default=3, help="timed steps per point (default: 3)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default: 3)")
    p.add_argument("--out", default=None, help="also write the rows as JSON")
    p.add_argument("--profile", action="store_true",
                   help="instead: profile one QLAM step (T=784 unless --seq) by op, current and "
                        "--previous")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # JSON spec of one point
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Worker: one point in a fresh process (imports whichever qlam_qiskit PYTHONPATH names)


def _train_step(model, opt, x, y):
    """One step as ``training/loop.py`` takes it: forward, cross-entropy, backward, clip, AdamW."""
    from torch import nn

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def _worker(spec: dict) -> dict:
    import resource
    import time

    import torch

    threads = spec["threads"]
    torch.set_num_threads(threads)
    from qlam_qiskit.data import TASK_INFO
    from qlam_qiskit.models import ModelConfig, QLAMClassifier
    from qlam_qiskit.models.baselines import BaselineClassifier
    from qlam_qiskit.training.presets import preset

    try:
        from qlam_qiskit.training.runtime import keep_freed_memory
        keep_freed_memory()  # what `qlam-qiskit run` does
    except ImportError:  # pragma: no cover - older checkouts
        pass
    task, ds, gray = POINTS[spec["T"]]
    t_len, channels = TASK_INFO[task].shape(ds, gray)
    if "preset" in spec:  # another checkout's preset (--previous-preset)
        pre = spec["preset"]
    else:
        try:
            pre = preset(task, ds, spec["model"])  # memory options are QLAM's (since 2026-12-03)
        except TypeError:  # pragma: no cover - older checkouts
            pre = preset(task, ds)
    cfg = ModelConfig(**{**pre["model"], "d_model": spec["d_model"]}, d_input=channels,
                      num_classes=10, max_len=t_len if pre["position"] else 0)
    torch.manual_seed(0)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if spec["model"] == "frame":  # the shared frame alone: every block's mixer the identity
        model = QLAMClassifier(cfg, mixer=torch.nn.Identity)
    else:
        model = (QLAMClassifier(cfg) if spec["model"] == "qlam"
                 else BaselineClassifier(spec["model"], cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(spec["batch"], t_len, channels, generator=g)
    y = torch.randint(0, 10, (spec["batch"],), generator=g)

    step = _train_step(model, opt, x, y)

    t0 = time.perf_counter()
    step()  # warmup: compiles or loads kernels, first-touches memory
    warmup = time.perf_counter() - t0
    try:  # earlier checkouts let numba's first parallel call reset torch's thread count
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover
        pass
    torch.set_num_threads(threads)
    times, cpu = [], []
    for _ in range(spec["steps"]):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpu),
            "warmup_seconds": warmup, "params": sum(p.numel() for p in model.parameters()),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "base_rss_mib": base_rss, "torch_threads": torch.get_num_threads()}


def _profile_worker(spec: dict) -> dict:
    """One QLAM step under torch.profiler: self CPU time per op, grouped."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(spec["threads"])
    from qlam_qiskit.models import ModelConfig, QLAMClassifier
    from qlam_qiskit.training.presets import preset

    t_len = spec["T"]
    task, ds, _ = POINTS[t_len]
    cfg = ModelConfig(**preset(task, ds)["model"], max_len=t_len)
    torch.manual_seed(0)
    model = QLAMClassifier(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.rand(spec["batch"], t_len, 1), torch.randint(0, 10, (spec["batch"],))

    step = _train_step(model, opt, x, y)

    for _ in range(2):
        step()
    import numba
    numba.set_num_threads(min(spec["threads"], numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(spec["threads"])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    rows = [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3}
            for e in prof.key_averages()]
    return {"rows": sorted(rows, key=lambda r: -r["self_ms"])}


# ---------------------------------------------------------------------------------------------
# Orchestrator


def _busy_seconds() -> float:
    """CPU-seconds all cores have spent busy since boot (/proc/stat; 0 where there is none)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return 0.0
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _run_point(spec: dict, path: str) -> dict:
    """Run one point in a fresh process with ``path`` first on PYTHONPATH. Adds ``other_cores``:
    the cores other processes kept busy meanwhile (machine CPU time less the point's own, per
    second of wall time); above ~0.3 the point's times are inflated."""
    import resource
    import time

    n = str(spec["threads"])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
           "OPENBLAS_NUM_THREADS": n, "NUMBA_NUM_THREADS": n}
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, wall0 = _busy_seconds(), time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                          capture_output=True, text=True, cwd=str(Path(path).parent))
    wall, busy = time.perf_counter() - wall0, _busy_seconds() - busy0
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"point {spec} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["other_cores"] = max(0.0, busy - own) / wall
    out["load"] = os.getloadavg()[0]
    return out


def _widths(models: list[str], seqs: list[int]) -> dict[tuple[str, int], int]:
    """d_model per (model, T): QLAM's default width, baselines at its parameter count."""
    from qlam_qiskit.bench.grid import _num_params, matched_width
    from qlam_qiskit.models import ModelConfig

    out = {}
    for t in seqs:
        task, ds, gray = POINTS[t]
        target = _num_params("qlam", task, ds, ModelConfig.d_model, gray)
        for m in models:
            base = m.split("@")[0]
            out[m, t] = (ModelConfig.d_model if base in ("qlam", "frame")
                         else matched_width(base, task, ds, gray, target))
    return out


def _fmt(x: float) -> str:
    return f"{x:,.0f}"


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(_profile_worker(spec) if spec.get("profile") else _worker(spec)))
        return
    from qlam_qiskit.errors import StorageError  # here, not at the top: a worker imports the
    from qlam_qiskit.io import check_writable, save_json  # qlam_qiskit of its own checkout

    if args.out:  # refused now, not after the whole run
        try:
            check_writable(Path(args.out).absolute().parent)
        except StorageError as err:
            sys.exit(f"error: cannot write --out {args.out}; {err}")
    seqs = [int(s) for s in args.seq.split(",")]
    if args.profile:
        _profile(args, seqs[0] if args.seq != "196,784,1024" else 784)
        return
    models = [m for m in args.models.split(",") if m]
    if args.previous_preset and not args.previous:
        sys.exit("model_throughput: --previous-preset needs --previous DIR (the checkout whose "
                 "preset to time)")
    if args.previous:
        for prev in args.previous_models.split(","):
            models.insert(models.index(prev) + 1 if prev in models else len(models),
                          f"{prev}@previous")
        if args.previous_preset:
            models.insert(models.index("qlam@previous") + 1 if "qlam@previous" in models
                          else len(models), "qlam@previous-preset")
    widths = _widths([m for m in models], seqs)
    presets = {t: _preset_of(args.previous, t) for t in seqs} if args.previous_preset else {}
    prev_commit = None
    if args.previous:
        prev_commit = subprocess.run(["git", "-C", args.previous, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip() or "?"
    import torch

    print(f"# model_throughput  {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    print(f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}, "
          f"os.cpu_count()={os.cpu_count()}, threads per process: {args.threads}, batch "
          f"{args.batch}, {args.steps} timed steps per point, {args.repeats} interleaved rounds")
    print(f"this checkout: {ROOT} ({_git_head(ROOT)}); previous: "
          f"{args.previous + ' (' + prev_commit + ')' if args.previous else 'none'}")
    print(f"load average at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    points = [(m, t) for t in seqs for m in models]
    results: dict[tuple[str, int], list[dict]] = {p: [] for p in points}
    for rnd in range(args.repeats):
        for m, t in points:
            spec = {"model": m.split("@")[0], "T": t, "batch": args.batch,
                    "threads": args.threads, "steps": args.steps, "d_model": widths[m, t]}
            if m.endswith("@previous-preset"):
                spec["preset"] = presets[t]
            path = args.previous if m.endswith("@previous") else str(ROOT)
            r = _run_point(spec, path)
            results[m, t].append(r)
            print(f"  round {rnd + 1} {m:14s} T={t:5d}: {r['seconds']:.3f} s/step "
                  f"(other processes: {r['other_cores']:.2f} cores)", flush=True)
    rows = _table(results, args, widths)
    print(f"load average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.out:
        save_json({"threads": args.threads, "batch": args.batch, "previous": prev_commit,
                   "rows": rows, "raw": {f"{m}@T{t}": v for (m, t), v in results.items()}},
                  args.out)  # atomically, into a folder it makes


def _preset_of(path: str, t_len: int) -> dict:
    """The task preset that the checkout at ``path`` gives QLAM at T (read in a subprocess)."""
    task, ds, _ = POINTS[t_len]
    code = ("import json; from qlam_qiskit.training.presets import preset; "
            f"print(json.dumps(preset({task!r}, {ds})))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path},
                         capture_output=True, text=True, cwd=str(Path(path).parent), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _git_head(path: Path) -> str:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return out + (" + uncommitted changes" if dirty else "")


def _table(results, args, widths) -> list[dict]:
    """Print the markdown table; return its rows."""
    rows = []
    for (m, t), runs in results.items():
        sec = statistics.median(r["seconds"] for r in runs)
        busy = max(r["other_cores"] for r in runs)
        rows.append({"model": m, "T": t, "d_model": widths[m, t], "params": runs[0]["params"],
                     "seconds": sec, "sample_steps_per_s": args.batch * t / sec,
                     "min_s": min(r["seconds"] for r in runs),
                     "max_s": max(r["seconds"] for r in runs),
                     "cpu_per_wall": statistics.median(r["cpu_seconds"] / r["seconds"] for r in runs),
                     "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                     "above_import_mib": max(r["peak_rss_mib"] - r["base_rss_mib"] for r in runs),
                     "warmup_s": statistics.median(r["warmup_seconds"] for r in runs),
                     "other_cores": busy, "contended": busy > OTHER_CORES})
    by = {(r["model"], r["T"]): r for r in rows}
    print()
    print("| T | model | d_model | params | s/step (median) | min–max | sample-steps/s | "
          "× previous | time ÷ QLAM's | peak RSS MiB (above imports) | other load |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        prev = by.get((r["model"].split("@")[0] + "@previous", r["T"]))
        qlam = by.get(("qlam", r["T"]))
        vs_prev = f"{prev['seconds'] / r['seconds']:.2f}×" if prev else "—"
        vs_qlam = f"{r['seconds'] / qlam['seconds']:.2f}" if qlam else "—"
        mark = " *" if r["contended"] else ""
        print(f"| {r['T']} | {r['model']} | {r['d_model']} | {r['params']:,} | {r['seconds']:.3f} | "
              f"{r['min_s']:.3f}–{r['max_s']:.3f} | {_fmt(r['sample_steps_per_s'])} | {vs_prev} | "
              f"{vs_qlam} | {r['peak_rss_mib']:.0f} ({r['above_import_mib']:.0f}) | "
              f"{r['other_cores']:.2f}{mark} |")
    print("\n× previous = the same model's s/step in --previous ÷ the row's (higher is faster); time ÷ QLAM's "
          "= the row's s/step ÷ this QLAM's (above 1: slower than QLAM). "
          f"other load = the most cores other processes kept busy during a round of the point; "
          f"* = over {OTHER_CORES}: they shared the cores with it, so its times are inflated "
          f"(the median over rounds resists one such round, not several).")
    return rows


def _profile(args, t_len: int) -> None:
    """Print a by-op table of one QLAM step for this checkout and --previous."""
    for label, path in [("this checkout", str(ROOT))] + (
            [("previous", args.previous)] if args.previous else []):
        spec = {"profile": True, "T": t_len, "batch": args.batch, "threads": args.threads}
        out = _run_point(spec, path)
        total = sum(r["self_ms"] for r in out["rows"])
        print(f"\n## {label}: one QLAM training step, T={t_len}, B={args.batch}, "
              f"{args.threads} thread(s): {total:.0f} ms of op self time "
              f"(other processes: {out['other_cores']:.2f} cores)\n")
        print("| op | calls | self ms | share |")
        print("|---|---:|---:|---:|")
        for r in out["rows"][:15]:
            print(f"| {r['op']} | {r['calls']} | {r['self_ms']:.1f} | {r['self_ms'] / total:.0%} |")


if __name__ == "__main__":
    main()
