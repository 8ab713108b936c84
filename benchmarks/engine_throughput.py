"""Forward+backward throughput of one QLAM memory: our engine vs naive torch vs EstimatorQNN.

What one "batch" is, for every method: B sequences of T tokens through ONE quantum memory (H=1,
default cell ``CellConfig(qubits=n)``: RZ input block, one RY/RZ + ring-CZ mixing layer), then the
K=2 learned-basis readouts at the final token, loss = sum of the readouts, and ``backward()`` for
gradients w.r.t. the input angles θ (a leaf tensor), the mixing weights and the basis weights.

Methods:

* ``engine``: ``SequenceEngine`` (fused diag/unitary scan with hand-written backward) +
  ``ReadoutEngine`` (real-arithmetic readout), complex64.
* ``reference``: ``run_reference`` (every gate of every token applied one by one, plain autograd)
  + the same ``ReadoutEngine``, complex64.
* ``estimator_qnn``: qiskit-machine-learning ``EstimatorQNN`` + ``TorchConnector`` on Aer
  ``EstimatorV2`` (exact: ``default_precision=0.0``), with its default gradient
  (``ParamShiftEstimatorGradient``) and ``input_gradients=True``. Circuit: ``qlam_sequence(cell,
  T).circuit`` + the query-0 basis rotation, observables: the query's Z-type terms. Input params:
  the sequence inputs; weight params: mixing weights + query-0 basis angles. It evaluates ONE of the
  two queries (two would need a second QNN, about twice the time), so its cost is understated and the
  speedups against it are conservative.

Throughput is sample-steps/s = B·T / (median seconds per forward+backward of one batch), after a
warmup. The speedup column is (engine sample-steps/s) / (row sample-steps/s) at the same n and T,
i.e. the ratio of time per training sample, so rows with different B compare fairly.

Run:  python benchmarks/engine_throughput.py --threads 1 [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads and Aer max_parallel_threads (default: 1)")
    p.add_argument("--quick", action="store_true",
                   help="small subset: n in {4, 6}, T=64, QNN at T=4 only, fewer repeats")
    p.add_argument("--out", default=None, help="also write the rows as JSON to this path")
    p.add_argument("--ref-batch", type=int, default=64,
                   help="batch for the naive reference (default: 64, same as the engine)")
    p.add_argument("--skip-qnn", action="store_true", help="leave out the EstimatorQNN rows")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # before numpy/torch/Aer start their thread pools
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import datetime as _dt  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from qlam_qiskit.backends.engine.reference import run_reference  # noqa: E402
from qlam_qiskit.backends.engine import ReadoutEngine, SequenceEngine  # noqa: E402
from qlam_qiskit.circuits.cell import CellConfig, init_circuit, qlam_cell  # noqa: E402
from qlam_qiskit.circuits.readout import qlam_readout, z_observables  # noqa: E402
from qlam_qiskit.circuits.sequence import qlam_sequence  # noqa: E402
from qlam_qiskit.io import save_json  # noqa: E402

K = 2  # readout queries
H = 1  # one quantum memory


def peak_rss_mib() -> float:
    """Process high-water RSS so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fmt_rate(x: float) -> str:
    """Thousands separators for big rates, 3 significant digits for small ones."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def time_it(fn, repeats: int, warmup: int = 1, budget_s: float = 60.0,
            long_s: float = 20.0) -> tuple[float, int]:
    """Median seconds of ``fn()`` over up to ``repeats`` runs after ``warmup`` runs.

    Stops early (after at least one timed run) once the timed runs have used ``budget_s``. A warmup
    run longer than ``long_s`` is itself the one measurement (first-call overheads are negligible
    next to it, and repeating it would not fit the time budget).
    """
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        if time.perf_counter() - t0 > long_s:
            return time.perf_counter() - t0, 1
    times: list[float] = []
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if sum(times) > budget_s:
            break
    return statistics.median(times), len(times)


class Setup:
    """Cell, engines and trainable tensors of one (n, T, B) point; random but seeded."""

    def __init__(self, n: int, steps: int, batch: int, seed: int = 0) -> None:
        self.cfg = CellConfig(qubits=n)
        self.cell = qlam_cell(self.cfg)
        self.init = init_circuit(n)
        self.readout = qlam_readout(n, K, pairs=self.cfg.entangling_pairs)
        self.seq_engine = SequenceEngine(self.cell, self.init)
        self.ro_engine = ReadoutEngine(self.readout)
        g = torch.Generator().manual_seed(seed)
        m, p = self.cfg.num_inputs, self.cfg.num_weights
        self.theta = (torch.rand(steps, H, batch, m, generator=g) * 2 * np.pi).requires_grad_()
        self.w = (0.3 * torch.randn(H, p, generator=g)).requires_grad_()
        self.r = (0.3 * torch.randn(H, len(self.readout.weights), generator=g)).requires_grad_()

    def zero_grad(self) -> None:
        for t in (self.theta, self.w, self.r):
            t.grad = None

    def step_engine(self) -> torch.Tensor:
        self.zero_grad()
        last = self.seq_engine.run(self.theta, self.w, all_states=False)  # (H, B, D)
        ev = self.ro_engine(last, self.r)  # (H, B, K, M)
        ev.sum().backward()
        return ev

    def step_reference(self) -> torch.Tensor:
        self.zero_grad()
        last = run_reference(self.cell, self.theta, self.w, self.init)[-1]  # (H, B, D)
        ev = self.ro_engine(last, self.r)
        ev.sum().backward()
        return ev


class QNNSetup:
    """EstimatorQNN + TorchConnector for the same cell, T tokens, query 0's basis and Z terms."""

    def __init__(self, n: int, steps: int, batch: int, threads: int, seed: int = 0) -> None:
        from qiskit_aer.primitives import EstimatorV2
        from qiskit_machine_learning.connectors import TorchConnector
        from qiskit_machine_learning.neural_networks import EstimatorQNN

        self.cfg = CellConfig(qubits=n)
        cell = qlam_cell(self.cfg)
        self.seq = qlam_sequence(cell, steps)
        self.readout = qlam_readout(n, K, pairs=self.cfg.entangling_pairs)
        query0 = self.readout.circuits[0]
        circuit = self.seq.circuit.compose(query0)  # no transpile: Aer takes RZ/RY/CZ/H/U as is
        self.weight_params = list(self.seq.weights) + list(query0.parameters)
        # exact: precision 0.0 both for the QNN's forward (its own default_precision, 0.015625
        # otherwise, adds shot noise on Aer) and for the gradient (which uses the estimator's)
        estimator = EstimatorV2(options={
            "default_precision": 0.0,
            "backend_options": {"max_parallel_threads": threads},
        })
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no pass manager given": none is needed for Aer
            self.qnn = EstimatorQNN(circuit=circuit,
                                    observables=z_observables(n, self.readout.terms),
                                    input_params=list(self.seq.inputs),
                                    weight_params=self.weight_params,
                                    estimator=estimator, input_gradients=True,
                                    default_precision=0.0)
        rng = np.random.default_rng(seed)
        self.model = TorchConnector(self.qnn,
                                    initial_weights=0.3 * rng.standard_normal(self.qnn.num_weights))
        g = torch.Generator().manual_seed(seed)
        self.x = (torch.rand(batch, self.qnn.num_inputs, generator=g, dtype=torch.float64)
                  * 2 * np.pi).requires_grad_()

    def step(self) -> torch.Tensor:
        self.model.zero_grad()
        self.x.grad = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = self.model(self.x)  # (B, M)
            y.sum().backward()
        return y

    def check_against_engine(self) -> float:
        """Max |QNN - engine| of the query-0 readouts for the QNN's own inputs and weights."""
        n, steps = self.cfg.qubits, self.seq.steps
        m = self.cfg.num_inputs
        wts = self.model.weight.detach().double()
        p = self.cfg.num_weights
        # weight_params are ordered: mixing weights, then query-0 U angles r[0..3n-1]
        w = wts[:p][None]
        r = torch.zeros(1, len(self.readout.weights), dtype=torch.float64)
        r[0, :3 * n] = wts[p:]
        theta = self.x.detach().reshape(-1, steps, m).permute(1, 0, 2)[:, None]  # (T, 1, B, m)
        eng = SequenceEngine(qlam_cell(self.cfg), init_circuit(n), dtype="complex128")
        ro = ReadoutEngine(self.readout, dtype="complex128")
        ev = ro(eng.run(theta, w, all_states=False), r)[0, :, 0]  # (B, M) query 0
        with torch.no_grad():
            y = self.model(self.x)
        return float((ev - y).abs().max())


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    stamp = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    import qiskit
    import qiskit_aer
    import qiskit_machine_learning

    print(f"# engine_throughput  {stamp}")
    print(f"torch {torch.__version__} (threads={torch.get_num_threads()}), qiskit {qiskit.__version__}"
          f", qiskit-aer {qiskit_aer.__version__}, qiskit-machine-learning "
          f"{qiskit_machine_learning.__version__}, python {platform.python_version()}")
    print(f"host: {platform.machine()}, os.cpu_count()={os.cpu_count()} (cores may be shared with "
          f"other jobs; load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at start)")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    sys.stdout.flush()

    if args.quick:
        grid_n, grid_t, reps, ref_reps = (4, 6), (64,), 3, 2
        qnn_grid = (4,)
    else:
        grid_n, grid_t, reps, ref_reps = (4, 6, 8), (64, 784), 5, 3
        qnn_grid = (4, 16)
    batch = 64
    rows: list[dict] = []

    def record(method, n, steps, b, sec, nrep):
        row = dict(method=method, n=n, T=steps, B=b, sec_per_batch=sec, reps=nrep,
                   sample_steps_per_s=b * steps / sec, peak_rss_mib=peak_rss_mib())
        rows.append(row)
        print(f"  {method:>14}  n={n} T={steps:<4} B={b:<3} {sec:10.4f} s/batch "
              f"{row['sample_steps_per_s']:12.4g} sample-steps/s  ({nrep} reps)")
        sys.stdout.flush()

    # (a) our engine, plus the QNN comparison points
    print("\n(a) engine: SequenceEngine (kernel auto) + ReadoutEngine, complex64")
    points = [(n, t, batch) for n in grid_n for t in grid_t]
    if not args.skip_qnn:
        points += [(4, t, b) for t in qnn_grid for b in (batch, 2)]
    for n, steps, b in points:
        s = Setup(n, steps, b)
        assert s.seq_engine.kernel_for(torch.device("cpu")) != "steps", "no scan kernel taken"
        sec, nrep = time_it(s.step_engine, reps, warmup=2)
        record("engine", n, steps, b, sec, nrep)

    # (b) naive per-gate reference
    print(f"\n(b) reference: run_reference (gate by gate, autograd) + ReadoutEngine, complex64, "
          f"B={args.ref_batch}")
    for n in grid_n:
        for steps in grid_t:
            s = Setup(n, steps, args.ref_batch)
            sec, nrep = time_it(s.step_reference, ref_reps, warmup=1, budget_s=45.0)
            record("reference", n, steps, args.ref_batch, sec, nrep)

    # (c) EstimatorQNN + TorchConnector on Aer EstimatorV2
    if not args.skip_qnn:
        print("\n(c) EstimatorQNN + TorchConnector, Aer EstimatorV2 (exact), ParamShift gradient, "
              "query 0 only")
        qb = 2
        for i, steps in enumerate(qnn_grid):
            q = QNNSetup(4, steps, qb, args.threads)
            err = q.check_against_engine()
            print(f"  check T={steps}: max |QNN - engine| of query-0 readouts = {err:.2e}")
            assert err < 1e-6, "EstimatorQNN and the engine disagree"
            # the T=4 run warms up imports, Aer and the gradient machinery; the long T=16 run is
            # timed once (about a minute per sample here) after that warmup
            warm, nrep = (1, 3) if i == 0 else (0, 1)
            sec, nrep = time_it(q.step, nrep, warmup=warm, budget_s=60.0)
            record("estimator_qnn", 4, steps, qb, sec, nrep)

    # table
    best = {}
    for r in rows:
        if r["method"] == "engine" and r["B"] == batch:
            best[(r["n"], r["T"])] = r["sample_steps_per_s"]
    print(f"\n## Results ({stamp}, torch threads={torch.get_num_threads()}, "
          f"{os.cpu_count()} shared cores)\n")
    print("| method | n | T | B | seconds/batch | sample-steps/s | engine speedup (per sample) "
          "| reps | peak RSS so far (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ref = best.get((r["n"], r["T"]))
        r["engine_speedup"] = ref / r["sample_steps_per_s"] if ref else None
        sp = f"{r['engine_speedup']:,.1f}×" if ref else "–"
        print(f"| {r['method']} | {r['n']} | {r['T']} | {r['B']} | {r['sec_per_batch']:.4g} | "
              f"{fmt_rate(r['sample_steps_per_s'])} | {sp} | {r['reps']} | {r['peak_rss_mib']:.0f} |")
    print("\nspeedup = engine (B=64) sample-steps/s ÷ row sample-steps/s at the same n, T "
          "(= ratio of seconds per training sample).")

    for r in rows:
        if r["method"] == "estimator_qnn":
            e64 = best[(r["n"], r["T"])]
            e2 = next(x["sample_steps_per_s"] for x in rows if x["method"] == "engine"
                      and x["n"] == r["n"] and x["T"] == r["T"] and x["B"] == 2)
            qs = r["sec_per_batch"] / r["B"]
            print(f"headline n={r['n']} T={r['T']}: EstimatorQNN {qs:.3g} s/sample vs engine "
                  f"{r['T'] / e64 * 1e3:.3g} ms/sample (B=64) -> {e64 / r['sample_steps_per_s']:,.0f}"
                  f"× faster; at the same B=2: {e2 / r['sample_steps_per_s']:,.0f}× faster")
    print(f"peak RSS of the whole run: {peak_rss_mib():.0f} MiB; load average at end: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if args.out:
        save_json(dict(timestamp=stamp, threads=torch.get_num_threads(),
                       cpu_count=os.cpu_count(), argv=sys.argv, rows=rows), args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
