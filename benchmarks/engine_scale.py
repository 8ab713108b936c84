"""Engine speed and memory at scale (issue 6): one table from one run on one machine.

One training step of ONE quantum memory (H=1, default cell ``CellConfig(qubits=n)``), B sequences
of T tokens, K=2 learned-basis readouts of the final state, loss = their sum, ``backward()`` for
the input angles θ, the mixing weights and the basis weights. Methods:

* ``fused``: ``SequenceEngine`` default on CPU (``kernel="fused"``): the numba product-form kernel,
  O(n·2^n) per token, adjoint backward (memory independent of T), complex64;
* ``engine``: ``SequenceEngine(kernel="dense")``: mixing fused into one 2^n×2^n unitary, one batched
  matmul per token, states stored for backward (complex64);
* ``adjoint``: the dense kernel with unitary-adjoint backpropagation (``kernel="dense-adjoint"``);
* ``naive``: every gate of every token applied one by one in plain torch autograd
  (``run_reference``), the straightforward way;
* ``pennylane``: PennyLane ``default.qubit``, torch interface, backprop, parameter broadcasting
  over the batch; the same gates (H init; per token RZ(θ_q), RY(w)·RZ(w), CZ ring), ⟨Z_q⟩ of the
  final state (only if ``pennylane`` is installed: ``pip install pennylane``);
* ``qnn``: qiskit-machine-learning ``EstimatorQNN`` + ``TorchConnector`` on Aer ``EstimatorV2``
  (exact, default parameter-shift gradient), the Qiskit-native way; n=4, T=16, B=2 only;
* ``lstm``: ``torch.nn.LSTM`` with as many real state numbers as the memory (hidden 2·2^n),
  n inputs per token, loss on the last hidden state: what a classical step of that size costs.

Every point runs in a fresh subprocess, so its memory figures are its own: ``step MiB`` is the
high-water RSS of the first training step above the RSS just before it (it includes one-time costs
such as loading compiled kernels), ``process MiB`` the high-water RSS of the whole process after
all steps (interpreter, libraries, inputs and every step: what the training process needs). Points whose estimated time exceeds ``--budget`` seconds are
reported as skipped with the estimate. ``roofline`` = achieved GFLOP/s (engine: 24·D² real FLOPs
per sample-step: 8·D² forward, 16·D² backward) over the measured complex64 batched-matmul rate at
the same (B, D) on this machine and thread count (D capped at 4096: the rate has saturated and a
larger matrix would not fit the benchmark's memory). ``fused`` does about (59n + 62)·D real FLOPs
per sample-step (butterflies, phases and their adjoints, counted from the kernel's loops): its
roofline is that work rate over the same matmul rate; the summary also gives its speed against
the dense kernels at equal points.

Run:  python benchmarks/engine_scale.py --threads 2 [--quick] [--out rows.json]
On a GPU: python benchmarks/engine_scale.py --device cuda --methods engine,adjoint,lstm --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

METHODS = ("fused", "engine", "adjoint", "naive", "pennylane", "qnn", "lstm")


def grid(quick: bool) -> list[tuple[str, int, int, int]]:
    """(method, n, T, B) points of the table."""
    pts = []
    ns, ts = ((4, 6, 8), (64, 784)) if quick else ((4, 6, 8, 10, 12, 14), (64, 784, 4096))
    for n in ns:
        for t in ts:
            pts.append(("fused", n, t, 64))
            if n <= 12:
                pts += [("engine", n, t, 64), ("lstm", n, t, 64)]
            if n <= 10:
                pts.append(("adjoint", n, t, 64))
            if t == 64 or (t == 784 and n in (4, 8)):
                pts.append(("naive", n, t, 64))
        if n <= 12:
            pts.append(("pennylane", n, 784, 64))
    if not quick:  # 14 qubits over long sequences: smaller batches
        pts += [("fused", 14, 784, 16), ("fused", 14, 4096, 8)]
    pts += [("fused", 6, 784, 256), ("engine", 6, 784, 256), ("adjoint", 6, 784, 256),
            ("qnn", 4, 16, 2), ("fused", 4, 16, 64), ("engine", 4, 16, 64)]
    return pts


def estimate(m: str, n: int, t: int, b: int) -> float:
    """Seconds one step would take at 1 thread, from rates measured here at n=4..8 (only used
    to skip hopeless points; it errs on the slow side)."""
    d = 2**n
    per_sample_step = {
        "fused": 1e-6 + 1e-8 * n * d,  # O(n·D) butterflies, ~5 GFLOP/s-equivalent per core
        "engine": 2.5e-6 + 9e-10 * d * d,  # overhead + ~24·D² FLOPs at ~25 GFLOP/s
        "adjoint": 2.5e-6 + 9e-10 * d * d,
        "naive": 1.7e-3 * max(1.0, d / 256),  # per-gate kernel overhead dominates
        "pennylane": 8e-5 * (d / 16) ** 0.5,
        "qnn": 0.75,  # parameter shift: ~2 x occurrences circuits per sample
        "lstm": 1e-6 + 1.6e-10 * d * d,  # hidden 2D: ~32·D² FLOPs
    }[m]
    return per_sample_step * b * t


# ------------------------------------------------------------------------------ one point


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    """High-water RSS of this process (VmHWM: unlike ru_maxrss it is not inherited from the
    parent across fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(m: str, n: int, t: int, b: int, threads: int, device: str = "cpu") -> dict:
    """Time one method at one point in this process; return its row."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    dev = torch.device(device)
    if dev.type != "cpu" and m not in ("engine", "adjoint", "naive", "lstm"):
        raise ValueError(f"{m} runs on the CPU only")
    if m in ("fused", "engine", "adjoint", "naive"):
        from qlam_qiskit.backends.engine.reference import run_reference
        from qlam_qiskit.backends.engine import ReadoutEngine, SequenceEngine
        from qlam_qiskit.circuits.cell import CellConfig, init_circuit, qlam_cell
        from qlam_qiskit.circuits.readout import qlam_readout

        cfg = CellConfig(qubits=n)
        cell, init = qlam_cell(cfg), init_circuit(n)
        eng = SequenceEngine(cell, init, kernel={"fused": "fused", "adjoint": "dense-adjoint"}
                             .get(m, "dense"))
        ro = ReadoutEngine(qlam_readout(n, 2, pairs=cfg.entangling_pairs))
        theta = (torch.rand(t, 1, b, cfg.num_inputs, generator=g) * 2 * np.pi).to(dev)
        w = (0.3 * torch.randn(1, cfg.num_weights, generator=g)).to(dev)
        r = (0.3 * torch.randn(1, 6 * n, generator=g)).to(dev)
        for leaf in (theta, w, r):
            leaf.requires_grad_()

        def step():
            theta.grad = w.grad = r.grad = None  # as optimizer.zero_grad(set_to_none=True)
            last = (run_reference(cell, theta, w, init)[-1] if m == "naive"
                    else eng.run(theta, w, all_states=False))  # (1, B, D)
            ro(last, r).sum().backward()
    elif m == "lstm":
        lstm = torch.nn.LSTM(n, 2 * 2**n).to(dev)
        x = torch.randn(t, b, n, generator=g).to(dev).requires_grad_()

        def step():
            lstm(x)[1][0].sum().backward()
    elif m == "pennylane":
        import pennylane as qml

        dev = qml.device("default.qubit", wires=n)
        theta = (torch.rand(t, n, b, generator=g) * 2 * np.pi).requires_grad_()
        w = (0.3 * torch.randn(2, n, generator=g)).requires_grad_()

        @qml.qnode(dev, interface="torch", diff_method="backprop")
        def circuit(theta, w):
            for q in range(n):
                qml.Hadamard(q)
            for k in range(t):
                for q in range(n):
                    qml.RZ(theta[k, q], wires=q)  # (B,) broadcast
                for q in range(n):
                    qml.RY(w[0, q], wires=q)
                    qml.RZ(w[1, q], wires=q)
                for q in range(n):
                    qml.CZ(wires=[q, (q + 1) % n])
            return [qml.expval(qml.PauliZ(q)) for q in range(n)]

        def step():
            torch.stack(circuit(theta, w)).sum().backward()
    elif m == "qnn":
        import warnings

        from qiskit_aer.primitives import EstimatorV2
        from qiskit_machine_learning.connectors import TorchConnector
        from qiskit_machine_learning.neural_networks import EstimatorQNN

        from qlam_qiskit.circuits.cell import CellConfig, qlam_cell
        from qlam_qiskit.circuits.readout import qlam_readout, z_observables
        from qlam_qiskit.circuits.sequence import qlam_sequence

        cfg = CellConfig(qubits=n)
        seq = qlam_sequence(qlam_cell(cfg), t)
        query = qlam_readout(n, 2, pairs=cfg.entangling_pairs)
        circ = seq.circuit.compose(query.circuits[0])
        est = EstimatorV2(options={"default_precision": 0.0,
                                   "backend_options": {"max_parallel_threads": threads}})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qnn = EstimatorQNN(circuit=circ, observables=z_observables(n, query.terms),
                               input_params=list(seq.inputs),
                               weight_params=list(seq.weights) + list(query.circuits[0].parameters),
                               estimator=est, input_gradients=True, default_precision=0.0)
        model = TorchConnector(qnn)
        x = (torch.rand(b, qnn.num_inputs, generator=g, dtype=torch.float64) * 6.28).requires_grad_()

        def step():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model(x).sum().backward()
    else:
        raise ValueError(m)

    def timed() -> float:
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    base = _rss_mib()
    first = timed()  # warmup, and the measurement when it is long
    peak_first = _peak_mib() - base
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = [first] if first > 10 else []
    while len(times) < 5 and sum(times) < 20:
        times.append(timed())
    sec = sorted(times)[len(times) // 2]
    row = {"method": m, "n": n, "T": t, "B": b, "threads": threads, "device": device,
           "seconds": sec, "reps": len(times), "rate": b * t / sec, "peak_mib": peak_first,
           "process_peak_mib": _peak_mib()}
    if dev.type == "cuda":  # device memory of a steady step: what grows with T on the GPU
        row["cuda_peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return row


def matmul_rate(b: int, d: int, threads: int, device: str = "cpu") -> float:
    """Measured complex64 batched-matmul GFLOP/s for (1, B, D) @ (1, D, D) on ``device``."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(1, b, d, dtype=torch.complex64, device=device)
    m = torch.randn(1, d, d, dtype=torch.complex64, device=device)
    out = torch.empty_like(a)
    reps = max(3, int(2e9 / (8 * b * d * d)))
    if device != "cpu":
        reps *= 50  # GPUs are ~50x faster: keep the timing well above launch noise
    torch.bmm(a, m, out=out)
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.bmm(a, m, out=out)
    sync()
    return 8 * b * d * d * reps / (time.perf_counter() - t0) / 1e9


# ------------------------------------------------------------------------------ the table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--quick", action="store_true", help="n in {4,6,8}, T in {64,784}")
    p.add_argument("--budget", type=float, default=90.0,
                   help="skip points estimated to take longer than this many seconds per step")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    p.add_argument("--out", help="also write the rows as JSON")
    p.add_argument("--device", default="cpu",
                   help="cpu (default) or cuda: the dense kernels and the LSTM on the GPU "
                   "(fused, PennyLane and the QNN run on the CPU only and are skipped)")
    p.add_argument("--one", nargs=4, metavar=("METHOD", "N", "T", "B"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        m, n, t, b = a.one
        print(json.dumps(one(m, int(n), int(t), int(b), a.threads, a.device)))
        return 0
    want = set(a.methods.split(","))
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    rows = []
    print(f"engine_scale {time.strftime('%Y-%m-%dT%H:%M:%S%z')}  threads={a.threads}  "
          f"cpus={os.cpu_count()}", flush=True)
    for m, n, t, b in grid(a.quick):
        if m not in want:
            continue
        est = estimate(m, n, t, b)
        if est > a.budget:
            rows.append({"method": m, "n": n, "T": t, "B": b, "skipped": f"est. {est:,.0f} s"})
            print(f"{m:9s} n={n:2d} T={t:5d} B={b:3d}  skipped (est. {est:,.0f} s/step)", flush=True)
            continue
        res = subprocess.run([sys.executable, __file__, "--threads", str(a.threads),
                              "--device", a.device, "--one", m,
                              str(n), str(t), str(b)], capture_output=True, text=True, env=env)
        if res.returncode:
            why = (res.stderr.strip().splitlines() or ["failed"])[-1][:120]
            rows.append({"method": m, "n": n, "T": t, "B": b, "skipped": why})
            print(f"{m:9s} n={n:2d} T={t:5d} B={b:3d}  skipped ({why})", flush=True)
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        if m in ("fused", "engine", "adjoint"):
            d = 2**n
            flops = (59 * n + 62) * d if m == "fused" else 24 * d * d  # per sample-step
            row["gflops"] = row["rate"] * flops / 1e9
            row["roofline"] = row["gflops"] / matmul_rate(b, min(d, 4096), a.threads, a.device)
        rows.append(row)
        extra = f"  {row['gflops']:.1f} GFLOP/s = {row['roofline']:.0%} of matmul" \
            if "roofline" in row else ""
        print(f"{m:9s} n={n:2d} T={t:5d} B={b:3d}  {row['rate']:>12,.0f} sample-steps/s  "
              f"{row['seconds']:8.3f} s/step  step {row['peak_mib']:8.1f} MiB  process "
              f"{row['process_peak_mib']:6.0f} MiB{extra}", flush=True)
    _summary(rows)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def _summary(rows: list[dict]) -> None:
    """Markdown table and the issue's comparison points."""
    ok = [r for r in rows if "rate" in r]
    by = {(r["method"], r["n"], r["T"], r["B"]): r for r in ok}
    print("\n| method | n | T | B | sample-steps/s | s/step | step MiB | process MiB | roofline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        head = f"| {r['method']} | {r['n']} | {r['T']} | {r['B']} |"
        if "rate" in r:
            roof = f"{r['roofline']:.0%}" if "roofline" in r else "—"
            print(f"{head} {r['rate']:,.0f} | {r['seconds']:.3f} | {r['peak_mib']:.1f} | "
                  f"{r['process_peak_mib']:.0f} | {roof} |")
        else:
            print(f"{head} skipped: {r['skipped']} | | | | |")
    print()

    def ratio(a, b, label):
        if a in by and b in by:
            print(f"{label}: {by[a]['rate'] / by[b]['rate']:,.1f}x")

    for m in ("fused", "engine"):
        ratio((m, 4, 16, 64), ("qnn", 4, 16, 2), f"{m} vs EstimatorQNN+TorchConnector, n=4 T=16 "
              "(per training sample)")
    for n in (4, 8):
        ratio(("fused", n, 784, 64), ("pennylane", n, 784, 64), f"fused vs PennyLane backprop, "
              f"n={n} T=784 B=64")
        ratio(("engine", n, 784, 64), ("pennylane", n, 784, 64), f"engine vs PennyLane backprop, "
              f"n={n} T=784 B=64")
        ratio(("adjoint", n, 784, 64), ("pennylane", n, 784, 64), f"adjoint vs PennyLane backprop, "
              f"n={n} T=784 B=64")
    for n in (4, 6, 8, 10, 12):
        ratio(("fused", n, 784, 64), ("engine", n, 784, 64), f"fused vs dense (stored states), "
              f"n={n} T=784 B=64")
    for m in ("fused", "engine", "adjoint"):
        if (m, 6, 784, 256) in by:
            print(f"{m} n=6 T=784 B=256: {by[(m, 6, 784, 256)]['rate']:,.0f} sample-steps/s")
    for m in ("fused", "engine", "adjoint"):
        a, b = by.get((m, 8, 784, 64)), by.get((m, 8, 4096, 64))
        if a and b:
            print(f"{m} memory n=8 B=64, T=784 -> T=4096: step {a['peak_mib']:.1f} -> "
                  f"{b['peak_mib']:.1f} MiB, process {a['process_peak_mib']:.0f} -> "
                  f"{b['process_peak_mib']:.0f} MiB "
                  f"({b['process_peak_mib'] / a['process_peak_mib'] - 1:+.1%})")


if __name__ == "__main__":
    sys.exit(main())
