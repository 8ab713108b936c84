"""One prepared check of every GPU path (issue 13), one line per check: PASS, FAIL, SKIP or INFO.

    python benchmarks/gpu_check.py               # a GPU machine: the whole check, < 8 minutes
    python benchmarks/gpu_check.py --simulate    # CPU: numba's CUDA simulator, tiny sizes (~40 s)

Checks, in order (each prints one line; --budget stops starting new ones past its seconds):

1. ``cases/<name>``: the fused GPU kernel (``backends/engine/gpu``) against the plain-autograd
   references, values and every gradient (``gpu/cases.py``: the CI cases on the GPU; 5 covering
   every kernel path by default, since each kernel shape compiles for ~10-25 s; --all-cases).
2. ``table n=.. T=..``: training-step throughput of one scan (forward + backward, loss on the
   last state; H=4 memories × B=64 sequences, complex64) for the fused GPU kernel, the dense
   kernel on the GPU (``SequenceEngine(kernel="dense")``, today's CUDA default) and the fused CPU
   kernel (numba, every core), n ∈ {3, 6, 10}, T ∈ {784, 4096}; sample-steps/s, peak GPU memory.
3. ``model B=..``: one training step (forward, cross-entropy, backward, AdamW) of the default model
   ``ModelConfig()`` at T=784, with the memories run by the dense kernel (today's auto on CUDA),
   by the fused GPU scan (a "fused-gpu" KERNELS row, added here at run time) and by the fused GPU
   scan with the readout inside the kernel; the implied sMNIST epoch (45,000 × 784 tokens).
4. ``aim ...``: the issue's aims (epoch ≤ 10 s; fused ≥ 20× dense at T=784).
5. ``aer_gpu``: ``--backend aer_gpu`` end to end (the Aer GPU estimator against the exact one) where
   qiskit-aer-gpu runs, else its refusal, which must be one line naming the CUDA mismatch (with
   --simulate, the same end-to-end path also runs on Aer's CPU build).
6. ``launch n=..``: the fused GPU kernel's launch shapes at T=784 (threads per sample × samples per
   block), to tune ``launch_shape``; last, so the budget cuts it first.

What the GPU machine needs: torch with CUDA, numba with numba-cuda, and qlam-qiskit's imports
(qiskit, rustworkx, stevedore, dill; numpy, scipy, tqdm, pillow); the qiskit-aer-gpu wheel for
check 5. benchmarks/README.md ("GPU check") has the exact commands to carry them as wheels.
Exit status 1 when a correctness check (1, 5 or a model equality) fails; the aims only report.
"""

from __future__ import annotations

import os
import sys

SIMULATE = "--simulate" in sys.argv
if SIMULATE:  # before numba is imported (qlam_qiskit imports it)
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    sys.setswitchinterval(5e-5)  # simulated CUDA threads hand over the GIL often

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import torch  # noqa: E402

from qlam_qiskit.backends.engine import engine as engine_mod  # noqa: E402
from qlam_qiskit.backends.engine import kernels as cpu_kernels  # noqa: E402
from qlam_qiskit.backends.engine.gpu import (fused_gpu_scan, gpu_product_readout,  # noqa: E402
                                             problem, simulating)
from qlam_qiskit.backends.engine.gpu.cases import (GPU_CASES, SIMULATE_CASES,  # noqa: E402
                                                   run_all, signs)
from qlam_qiskit.backends.engine.product import input_angles  # noqa: E402
from qlam_qiskit.circuits.cell import CellConfig, init_circuit, qlam_cell  # noqa: E402
from qlam_qiskit.io import save_json  # noqa: E402
from qlam_qiskit.models.qlam import ModelConfig, QLAMClassifier, QLAMLayer  # noqa: E402

Tensor = torch.Tensor
SMNIST_TRAIN = 45_000
RESULTS: list[dict] = []
COUNTS = {"PASS": 0, "FAIL": 0, "SKIP": 0}


def say(status: str, name: str, detail: str, **row) -> None:
    """One line per check; rows also go to --out."""
    print(f"{status} {name}: {detail}", flush=True)
    COUNTS[status] = COUNTS.get(status, 0) + 1
    RESULTS.append({"status": status, "name": name, "detail": detail, **row})


class Clock:
    """Seconds since start, and whether the budget still allows another check."""

    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.perf_counter(), budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def timed(fn, device: torch.device, reps: int, max_seconds: float) -> float:
    """Median seconds of fn() over up to ``reps`` runs (fewer past ``max_seconds``)."""
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        if sum(times) > max_seconds:
            break
    return sorted(times)[len(times) // 2]


def add_fused_gpu_row() -> None:
    """The "fused-gpu" KERNELS row, added here at run time until the engine has it: the CPU
    "fused" row with the GPU scan (its other fields are the same)."""
    if "fused-gpu" not in engine_mod.KERNELS:
        engine_mod.KERNELS["fused-gpu"] = replace(
            engine_mod.KERNELS["fused"], name="fused-gpu",
            about="numba-cuda kernel on the cell's product form",
            devices=("cpu",) if simulating() else ("cuda",), scan=fused_gpu_scan)


# --- 1. the kernel against the references --------------------------------------------------------
def check_cases(device: torch.device, every_case: bool) -> None:
    names = None if every_case else SIMULATE_CASES if simulating() else GPU_CASES
    for row in run_all(device, names, echo=False):
        say("PASS" if row["ok"] else "FAIL", f"cases/{row['name']}",
            f"error {row['error']:.1e} (tol {row['tol']:.0e}), {row['seconds']:.2f} s",
            correctness=True, **{k: row[k] for k in ("error", "tol", "seconds")})


# --- 2. scan throughput --------------------------------------------------------------------------
def scan_step(kernel: str, n: int, t: int, h: int, b: int, device: torch.device):
    """A closure running one forward + backward of one scan (loss on the last state)."""
    tpl = qlam_cell(CellConfig(qubits=n))
    eng = engine_mod.SequenceEngine(tpl, init_circuit(n), dtype="complex64", kernel=kernel)
    g = torch.Generator().manual_seed(0)
    theta = (torch.rand(t, h, b, n, generator=g) * 6.3).to(device).requires_grad_()
    w = torch.randn(h, len(tpl.weights), generator=g).to(device).requires_grad_()
    wr = torch.randn(h, b, 2**n, generator=g).to(device)

    def step() -> None:
        last = eng.run(theta, w, all_states=False)  # (H, B, D)
        ((last.real * wr).sum() + (last.abs() ** 2 * wr).sum()).backward()

    return step


def check_table(clock: Clock, device: torch.device) -> list[dict]:
    cpu = torch.device("cpu")
    ns, ts, h, b = ((2, 3), (8,), 2, 2) if simulating() else ((3, 6, 10), (784, 4096), 4, 64)
    methods = (("fused-gpu", device), ("dense", device), ("fused", cpu))
    if not cpu_kernels.available():
        methods = methods[:2]
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for n in ns:
        for t in ts:
            if clock.left() < 60 and not simulating():
                say("SKIP", f"table n={n} T={t}", f"out of budget ({clock.left():.0f} s left)")
                continue
            rates, peaks = {}, {}
            for name, dev in methods:
                try:
                    scan_step(name, n, 2, h, b, dev)()  # compile / warm up on a short sequence
                    step = scan_step(name, n, t, h, b, dev)
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats(dev)
                    sec = timed(step, dev, reps=3, max_seconds=4.0)
                    rates[name] = h * b * t / sec
                    peaks[name] = peak_gb(dev)
                except Exception as err:  # noqa: BLE001 - an out-of-memory row is a result too
                    rates[name] = float("nan")
                    say("FAIL", f"table n={n} T={t} {name}", str(err).splitlines()[0][:160])
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
            ok = all(math.isfinite(r) for r in rates.values())
            fused = rates.get("fused-gpu", float("nan"))
            detail = ", ".join(f"{k} {v:,.0f}" for k, v in rates.items()) + " sample-steps/s"
            detail += f"; fused-gpu/dense x{fused / rates['dense']:.1f}"
            if "fused" in rates:
                detail += f", fused-gpu/fused-cpu x{fused / rates['fused']:.1f}"
            if peaks.get("fused-gpu") is not None:
                detail += "; peak GPU GB " + ", ".join(
                    f"{k} {v:.2f}" for k, v in peaks.items() if v is not None)
            say("PASS" if ok else "FAIL", f"table n={n} T={t}", detail, n=n, T=t, H=h, B=b,
                rates=rates, peaks=peaks)
            rows.append({"n": n, "T": t, "rates": rates, "peaks": peaks})
    return rows


def check_launch(clock: Clock, device: torch.device) -> None:
    """Launch shapes of the fused GPU kernel at T=784 (threads per sample × samples per block;
    "auto" is ``launch_shape``'s pick): to tune the heuristic on the machine at hand."""
    from qlam_qiskit.backends.engine.gpu import gpu_product_scan, launch_shape
    from qlam_qiskit.backends.engine.product import product_form
    from qlam_qiskit.backends.engine.program import CircuitProgram

    grid = {2: [(None, None), (1, 2)]} if simulating() else {  # new tps: a compile (~15 s) each
        3: [(None, None), (4, 1), (4, 4), (4, 16), (4, 32), (1, 32), (1, 128), (2, 64)],
        6: [(None, None), (32, 1), (32, 4), (8, 4), (8, 16)]}
    t, h, b = (8, 2, 2) if simulating() else (784, 4, 64)
    for n, shapes in grid.items():
        if clock.left() < 60 and not simulating():
            say("SKIP", f"launch n={n}", f"out of budget ({clock.left():.0f} s left)")
            continue
        tpl = qlam_cell(CellConfig(qubits=n))
        form = product_form(CircuitProgram(tpl.circuit, list(tpl.inputs), list(tpl.weights)))
        g = torch.Generator().manual_seed(0)
        w = torch.randn(h, len(tpl.weights), generator=g).to(device)
        ins = form.inputs(w)
        u, e = form.unitaries(w, torch.complex64)
        psi0 = torch.zeros(h, b, 2**n, dtype=torch.complex64, device=device)
        psi0[..., 0] = 1
        rates = {}
        for tps, spb in shapes:
            kw = {"threads_per_sample": tps, "samples_per_block": spb}
            label = "auto {}x{}".format(*launch_shape(n, h, b, device=device)) if tps is None \
                else f"{tps}x{spb}"

            def step(steps: int) -> None:
                theta = (torch.rand(steps, h, b, n, generator=g) * 6.3).to(device)
                theta.requires_grad_()
                last = gpu_product_scan(psi0, theta, *ins, u, e, all_states=False, **kw)
                (last.abs() ** 2 * torch.arange(2**n, device=device)).sum().backward()

            step(2)
            rates[label] = h * b * t / timed(lambda: step(t), device, 3, 3.0)
        say("PASS", f"launch n={n} T={t}", ", ".join(f"{k}: {v:,.0f}" for k, v in rates.items())
            + " sample-steps/s (threads per sample x samples per block)", n=n, rates=rates)


# --- 3. the default model's training step --------------------------------------------------------
def qubit_rotations(layer: QLAMLayer, r: Tensor) -> Tensor:
    """Each query as one 2×2 rotation per qubit: (H, K, n, 2, 2) (the engine's
    ``ReadoutEngine.qubit_rotations`` once issue 12 lands; the same product of gate matrices)."""
    from qlam_qiskit.backends.engine.compile import gate_angles
    from qlam_qiskit.backends.engine.gates import gate_matrix

    ro = layer.measure
    h, n = r.shape[0], layer.cell_template.num_qubits
    eye = torch.eye(2, dtype=ro.dtype, device=r.device)
    out = []
    for q in ro.queries:
        per_q = [eye.expand(h, 2, 2)] * n
        for g in q.segments[0].gates:
            mat = gate_matrix(g.name, gate_angles(g, None, r), dtype=ro.dtype, device=r.device)
            per_q[g.qubits[0]] = mat @ per_q[g.qubits[0]]
        out.append(torch.stack([m.expand(h, 2, 2) for m in per_q], 1))  # (H, n, 2, 2)
    return torch.stack(out, 1)  # (H, K, n, 2, 2)


def fused_readout_forward(layer: QLAMLayer, x: Tensor) -> Tensor:
    """QLAMLayer.forward (readout at every token) with the readout inside the GPU kernel."""
    b, t, _ = x.shape
    eng = layer.engine
    real = torch.float64 if eng.dtype == torch.complex128 else torch.float32
    n = layer.cell_template.num_qubits
    theta = layer.input_angles(x).to(real)  # (B, T, H, m): Δ_h (W x + b)
    w, r = layer.mixing().to(real), layer.basis.to(real)  # (H, P): Δ_h w_h
    a_in, off, qubits, local = eng.product.inputs(w)
    alpha = input_angles(theta.permute(1, 2, 0, 3), a_in, off, qubits, local, n)  # (T, H, B, n, 2)
    u, e = eng.product.unitaries(w, eng.dtype)
    z = signs(n, layer.readout_template.terms).to(device=x.device, dtype=real)
    psi0 = eng.initial_state(layer.heads, b, x.device)
    y = gpu_product_readout(psi0, alpha.permute(2, 0, 1, 3, 4), u, e, qubit_rotations(layer, r),
                            z)  # (B, T, H, K, M)
    return layer.out(y.flatten(-3).to(layer.out.weight.dtype))


def make_model(variant: str, device: torch.device, cfg: ModelConfig) -> torch.nn.Module:
    """The default model with its memories run by ``variant``: dense, fused-gpu, fused-gpu+read,
    fused (CPU)."""
    kernel = {"dense": "dense", "fused-gpu": "fused-gpu", "fused-gpu+read": "fused-gpu",
              "fused": "fused"}[variant]
    torch.manual_seed(0)
    model = QLAMClassifier(replace(cfg, kernel=kernel)).to(device)
    if variant == "fused-gpu+read":
        for block in model.blocks:
            layer = block.mixer
            layer.forward = (lambda lay: (lambda x: fused_readout_forward(lay, x)))(layer)
    return model


def train_step(model: torch.nn.Module, opt, x: Tensor, y: Tensor) -> None:
    """Forward, cross-entropy, backward, AdamW."""
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def check_model(clock: Clock, device: torch.device) -> list[dict]:
    cpu = torch.device("cpu")
    if simulating():
        cfg, t, batches = ModelConfig(d_model=8, heads=2, layers=1, qubits=2), 6, (2,)
    else:
        cfg, t, batches = ModelConfig(), 784, (32, 256)
    variants = [("dense", device), ("fused-gpu", device), ("fused-gpu+read", device)]
    if cpu_kernels.available():
        variants.append(("fused", cpu))
    # equality first: every way gives the same logits and gradients (complex128 for the check)
    x = torch.randn(2, t if simulating() else 64, cfg.d_input, dtype=torch.float64)
    outs = {}
    try:
        for name, dev in variants[:3]:  # the GPU ways; the CPU kernel has its own tests
            model = make_model(name, dev, replace(cfg, dtype="complex128")).double()
            out = model(x.to(dev))
            out.square().sum().backward()
            outs[name] = (out.detach().cpu(), torch.cat([p.grad.flatten().cpu()
                                                         for p in model.parameters()]))
        ref = outs["dense"]
        err = max(max((o[0] - ref[0]).abs().max().item(), (o[1] - ref[1]).abs().max().item()
                      / max(1.0, ref[1].abs().max().item())) for o in outs.values())
        say("PASS" if err < 1e-9 else "FAIL", "model equality",
            f"logits and gradients of {', '.join(outs)} agree to {err:.1e} (complex128, "
            f"T={x.shape[1]})", correctness=True, error=err)
    except Exception as err:  # noqa: BLE001 - report, then time what runs
        say("FAIL", "model equality", f"{type(err).__name__}: {str(err).splitlines()[0][:160]}",
            correctness=True)
    rows = []
    for b in batches:
        for name, dev in variants:
            if name == "fused" and b != batches[0]:
                continue
            if clock.left() < 30 and not simulating():
                say("SKIP", f"model B={b} {name}", f"out of budget ({clock.left():.0f} s left)")
                continue
            xb = torch.randn(b, t, cfg.d_input, device=dev)
            yb = torch.randint(0, cfg.num_classes, (b,), device=dev)
            try:
                model = make_model(name, dev, cfg)
                opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
                train_step(model, opt, xb, yb)  # warm up (compiles)
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                sec = timed(lambda: train_step(model, opt, xb, yb), dev,  # noqa: B023
                            reps=1 if simulating() else 3, max_seconds=6.0)
            except Exception as err:  # noqa: BLE001 - report, then go on
                say("FAIL", f"model B={b} {name}",
                    f"{type(err).__name__}: {str(err).splitlines()[0][:160]}")
                continue
            epoch = math.ceil(SMNIST_TRAIN / b) * sec
            pk = peak_gb(dev)
            say("PASS", f"model B={b} {name}",
                f"{sec * 1e3:.1f} ms/step, sMNIST epoch {epoch:.1f} s"
                + (f", peak GPU {pk:.2f} GB" if pk is not None else ""),
                B=b, variant=name, seconds=sec, epoch=epoch, peak=pk)
            rows.append({"B": b, "variant": name, "seconds": sec, "epoch": epoch, "peak": pk})
    return rows


# --- 4. the aims ---------------------------------------------------------------------------------
def check_aims(table: list[dict], model: list[dict]) -> None:
    if simulating():
        say("SKIP", "aims", "simulated: the aims are GPU figures")
        return
    best = [r for r in model if r["variant"].startswith("fused-gpu")]
    if best:
        top = min(best, key=lambda r: r["epoch"])
        say("PASS" if top["epoch"] <= 10 else "FAIL", "aim epoch <= 10 s",
            f"best {top['epoch']:.1f} s ({top['variant']}, B={top['B']})", aim=True)
    ratios = [r["rates"]["fused-gpu"] / r["rates"]["dense"] for r in table if r["T"] == 784]
    dense = {(r["B"]): r for r in model if r["variant"] == "dense"}
    model_ratios = [dense[r["B"]]["seconds"] / r["seconds"] for r in model
                    if r["variant"] == "fused-gpu+read" and r["B"] in dense]
    if ratios or model_ratios:
        lo = min(ratios + model_ratios)
        say("PASS" if lo >= 20 else "FAIL", "aim fused >= 20x dense at T=784",
            "scan " + ", ".join(f"x{v:.0f}" for v in ratios) + "; model step "
            + ", ".join(f"x{v:.0f}" for v in model_ratios), aim=True)


# --- 5. aer_gpu ----------------------------------------------------------------------------------
def check_aer_gpu() -> None:
    try:
        from qlam_qiskit.backends.registry import resolve_backend
    except ImportError as err:
        say("SKIP", "aer_gpu", f"the registry does not import here ({err})")
        return
    why = resolve_backend("aer_gpu").problem()
    if why is None:
        end_to_end("aer_gpu")
        return
    named = "CUDA" in why or "no GPU support" in why or "not installed" in why
    say("PASS" if named and "\n" not in why else "FAIL", "aer_gpu refusal", f"aer_gpu: {why}",
        correctness=True)
    say("SKIP", "aer_gpu end to end", "refused above")
    if simulating() and resolve_backend("aer").problem() is None:
        end_to_end("aer")  # the same path on Aer's CPU build, so CI runs it


def end_to_end(name: str) -> None:
    """``name``'s estimator on a 4-qubit QLAM sequence (T=4, 3 parameter sets, 2 observables)
    against Qiskit's exact StatevectorEstimator."""
    import numpy as np
    from qiskit.primitives import StatevectorEstimator
    from qiskit.quantum_info import SparsePauliOp

    from qlam_qiskit.backends.primitives.estimator import RuntimeOptions, expectation_values
    from qlam_qiskit.backends.registry import resolve_backend
    from qlam_qiskit.circuits.sequence import qlam_sequence

    seq = qlam_sequence(qlam_cell(CellConfig(qubits=4)), 4).circuit
    vals = np.random.default_rng(0).uniform(-1, 1, (3, seq.num_parameters))
    obs = [SparsePauliOp("IIIZ"), SparsePauliOp("IZZI")]
    t0 = time.perf_counter()
    try:
        backend = resolve_backend(name).require()
        got = expectation_values(backend.estimator(RuntimeOptions()), seq, obs, vals)
    except Exception as err:  # noqa: BLE001 - report in one line
        say("FAIL", f"{name} end to end", f"{type(err).__name__}: {str(err).splitlines()[0]}",
            correctness=True)
        return
    want = expectation_values(StatevectorEstimator(), seq, obs, vals)
    err = float(np.abs(got - want).max())
    say("PASS" if err < 1e-6 else "FAIL", f"{name} end to end",
        f"Aer {'GPU' if name == 'aer_gpu' else 'CPU'} estimator vs exact on a T=4 QLAM sequence: "
        f"{err:.1e} ({time.perf_counter() - t0:.1f} s)", correctness=True, error=err)


def environment(device: torch.device) -> None:
    from importlib import metadata

    def ver(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "-"

    if device.type == "cuda":
        what = f"{torch.cuda.get_device_name(device)}, torch {torch.__version__} (CUDA " \
               f"{torch.version.cuda})"
    else:
        what = f"numba's CUDA simulator on CPU, torch {torch.__version__}"
    print(f"INFO environment: {what}; numba {ver('numba')}, numba-cuda {ver('numba-cuda')}, "
          f"qiskit {ver('qiskit')}, qiskit-aer {ver('qiskit-aer')}, qiskit-aer-gpu "
          f"{ver('qiskit-aer-gpu')}; {os.cpu_count()} CPUs", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulate", action="store_true",
                    help="CPU only: numba's CUDA simulator at tiny sizes")
    ap.add_argument("--budget", type=float, default=360.0,
                    help="seconds after which no new timing row starts (default 360)")
    ap.add_argument("--out", default=None, help="also write every line's row as JSON")
    ap.add_argument("--skip", default="", help="comma-separated: cases,table,model,aer_gpu,launch")
    ap.add_argument("--all-cases", action="store_true",
                    help="every kernel case on the GPU (default: 5 covering every path)")
    args = ap.parse_args()
    device = torch.device("cpu" if args.simulate else "cuda")
    why = problem(device)
    if why:
        say("FAIL", "fused-gpu available", why)
        return 1
    clock = Clock(args.budget)
    environment(device)
    add_fused_gpu_row()
    skip = set(filter(None, args.skip.split(",")))
    table = model = []
    if "cases" not in skip:
        check_cases(device, args.all_cases)
    if "table" not in skip:
        table = check_table(clock, device)
    if "model" not in skip:
        model = check_model(clock, device)
    check_aims(table, model)
    if "aer_gpu" not in skip:
        check_aer_gpu()
    if "launch" not in skip:
        check_launch(clock, device)
    failed = [r for r in RESULTS if r["status"] == "FAIL" and not r.get("aim")]
    print(f"gpu_check: {COUNTS['PASS']} PASS, {COUNTS['FAIL']} FAIL, {COUNTS['SKIP']} SKIP in "
          f"{time.perf_counter() - clock.start:.0f} s", flush=True)
    if args.out:
        save_json(RESULTS, args.out)  # atomic, into a folder made for it
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
