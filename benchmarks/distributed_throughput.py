"""Training throughput of one ``qlam-qiskit run`` in 1 process against N processes under torchrun
(data-parallel, one torch thread each), in interleaved rounds, with the machine's load average
read before and after every run (the figures mean little on a busy machine without it).

    python benchmarks/distributed_throughput.py --data-dir ../shared/data --limit-train 2000 \
        --rounds 2 --out benchmarks/results/distributed_throughput.json

Throughput is result.json's ``sample_steps_per_s`` (training samples × T per second of the
epoch, over all processes); wall is the whole command, imports and evaluation included, and CPU
the CPU seconds all its processes used (torchrun's agent included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(procs: int, run_args: list[str], out: Path) -> dict:
    """One ``run`` in ``procs`` processes (torchrun when more than one); its result and load."""
    run = ["-m", "qlam_qiskit", "run", *run_args, "--threads", "1", "--quiet", "--out", str(out)]
    cmd = [sys.executable, *(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                              str(procs)] if procs > 1 else []), *run]
    load_before = os.getloadavg()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    r = json.loads((out / "result.json").read_text())
    return {"procs": procs, "world_size": r["world_size"], "wall_s": wall, "cpu_s": cpu,
            "train_seconds": r["train_seconds"], "sample_steps_per_s": r["sample_steps_per_s"],
            "val_accuracy": r["val_accuracy"], "test_accuracy": r["test_accuracy"],
            "load_before": load_before, "load_after": os.getloadavg(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--task", default="smnist")
    ap.add_argument("--limit-train", type=int, default=2000)
    ap.add_argument("--limit-test", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, help="global batch (default: the task preset's)")
    ap.add_argument("--procs", default="1,2", help="comma-separated process counts")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write the rows here (JSON)")
    args = ap.parse_args()
    run_args = ["--task", args.task, "--data-dir", args.data_dir, "--limit-train",
                str(args.limit_train), "--limit-test", str(args.limit_test), "--epochs",
                str(args.epochs)] + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            for procs in (int(p) for p in args.procs.split(",")):
                row = one_run(procs, run_args, Path(tmp) / f"r{k}-p{procs}")
                rows.append({"round": k, **row})
                print(f"round {k} procs {procs}: {row['sample_steps_per_s']:,.0f} sample-steps/s, "
                      f"epoch {row['train_seconds']:.1f}s, wall {row['wall_s']:.1f}s, CPU "
                      f"{row['cpu_s']:.1f}s, load "
                      f"{row['load_before'][0]:.2f} -> {row['load_after'][0]:.2f}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "cores": os.cpu_count(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
