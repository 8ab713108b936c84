"""Training the hardware-compatible QLAM through Estimator primitives (EstimatorQNN +
TorchConnector): same loop and same run files as the exact engine, plus what each step costs."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Callable

import numpy as np
import torch

from ..io import save_json
from ..models.primitive import PrimitiveQLAM, attach_backend
from .loop import TrainConfig, check_run_space, seed_everything, train
from .plan import RunPlan, cell_record


def cost_report(model: PrimitiveQLAM, qnn: Any, data: Any, tcfg: TrainConfig, scope: str,
                gradient: str, name: str, echo: Callable[[str], None]) -> dict:
    """Print circuits per step and a timed estimate, with the levers that make it cheaper."""
    grad = qnn.batched_gradient
    wrt = np.arange(qnn.num_inputs + qnn.num_weights)
    per_sample = 0 if scope == "head" else grad.circuits_per_sample(qnn.circuit, wrt)
    b = tcfg.batch_size
    steps = -(-len(data.x_train) // b)
    per_step = b * (1 + per_sample)
    xb = data.x_train[:2]
    t0 = time.perf_counter()
    if scope == "head":
        with torch.no_grad():
            model(xb)
    else:
        model(xb).sum().backward()
        model.zero_grad(set_to_none=True)
    probe = (time.perf_counter() - t0) / len(xb)  # seconds per sample, forward + gradient
    model._cache.clear()
    qnn.calls.update(forward=0, backward=0, parameter_sets=0)  # count training only
    evals = len(data.x_val) + len(data.x_test)
    train_s = probe * len(data.x_train) * (1 if scope == "head" else tcfg.epochs)
    est = train_s + probe / (1 + per_sample) * evals * tcfg.epochs
    occ = per_sample // 2 if gradient == "shift" else None
    echo(f"cost on {name}: {per_step:,} circuit executions per step "
         f"(batch {b} x (1 forward + {per_sample} for the {gradient} gradient"
         + (f": 2 x {occ} parameter occurrences" if occ is not None and scope != 'head' else "")
         + f")), {steps} steps/epoch, {qnn.output_shape[0]} observables per circuit; "
         f"timed probe {probe:.3f} s/sample -> about {est:.0f} s in all")
    if scope != "head" or gradient != "spsa":
        echo("  cheaper: --train-scope head (circuit frozen, classical parts trained, each "
             "sample's circuit run once); --patch P (P pixels per token: T/P tokens); "
             "--gradient spsa (2 circuits per sample)")
    return {"circuits_per_step": per_step, "probe_seconds_per_sample": probe,
            "estimated_seconds": est, "steps_per_epoch": steps}


def train_primitives(plan: RunPlan, data: Any, *, progress: bool = True,
                     echo: Callable[[str], None] = print) -> dict:
    """Train ``plan`` (a primitives backend) on ``data`` (its loaded TaskData) and write the same
    run files as an exact run, plus the job ledger on IBM devices."""
    backend, opts, mcfg, tcfg = plan.backend, plan.primitives, plan.model, plan.train
    backend.check_options(opts.runtime)
    mcfg.d_input, mcfg.num_classes = data.channels, data.num_classes
    if not plan.resume:
        mcfg.max_len = data.seq_len if plan.position else 0
    seed_everything(tcfg.seed)
    model = PrimitiveQLAM(mcfg, cell=plan.cell)
    if opts.scope == "head":
        model.freeze_circuit()
    check_run_space(plan.out, model)
    ledger = backend.ledger(plan.out)
    mode = backend.mode("session")
    t0 = time.perf_counter()
    qnn, compiled = attach_backend(model, backend, data.seq_len, transpile=opts.transpile,
                                   runtime=opts.runtime, gradient=opts.gradient,
                                   input_gradients=opts.scope != "head", seed=tcfg.seed,
                                   mode=mode, ledger=ledger)
    n_params = sum(p.numel() for p in model.parameters())
    echo(f"qlam-qiskit run: task {plan.spec.task} ({len(data.x_train)} train / {len(data.x_val)} "
         f"val / {len(data.x_test)} test, T={data.seq_len}, C={data.channels}), backend "
         f"{backend.name} (EstimatorQNN + TorchConnector), hardware-compatible QLAM: 1 memory x "
         f"{mcfg.qubits} qubits read at the end, {n_params:,} parameters, train scope "
         f"{opts.scope}, {tcfg.epochs} epochs -> {plan.out}")
    echo(f"transpiled for {backend.name} in {time.perf_counter() - t0:.1f}s"
         f"{' (cached ISA circuit)' if compiled.cached else ''}: "
         f"{compiled.circuit.num_qubits} qubits {list(compiled.physical)[:8]}, "
         f"{compiled.two_qubit_gates} two-qubit gates, depth {compiled.circuit.depth()}")
    cost = cost_report(model, qnn, data, tcfg, opts.scope, opts.gradient, backend.name, echo)
    meta = {"model": "qlam", "model_kind": "qlam", "backend": backend.name,
            "model_config": asdict(model.config), **opts.record(), "cost": cost,
            "data": plan.spec.record(data), **cell_record(plan.cell)}
    try:
        result = train(model, data, tcfg, plan.out, meta=meta,
                       resume=plan.state if plan.resume else False, progress=progress)
    finally:
        if mode is not None:
            mode.close()
    result["qnn_calls"] = dict(qnn.calls)
    save_json(result, plan.out / "result.json")
    return result
