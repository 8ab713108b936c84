"""Deploy exact-trained weights: evaluate a hardware-compatible checkpoint on any backend and
compare its logits with the exact engine's."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backends import resolve_backend
from ..backends.primitives.estimator import RuntimeOptions, expectation_values
from ..backends.primitives.transpile import TranspileOptions
from ..circuits.readout import query_observables
from ..circuits.sequence import sequence_parameter_values
from ..data import DataSpec
from ..errors import CheckpointError, QLAMError
from ..models import QLAMClassifier
from ..models.primitive import PrimitiveQLAM, hardware_problem, on_circuit, sequence_template
from ..training.plan import stored_cell, stored_configs


def load_models(state: dict) -> tuple[QLAMClassifier, PrimitiveQLAM]:
    """The exact model (complex128, float64) and the primitives model, both with its weights."""
    cfg, _ = stored_configs(state, "the checkpoint")
    problem = hardware_problem(cfg, state.get("model_kind", "qlam"))
    if problem:
        raise QLAMError(problem)
    cfg64, cell = replace(cfg, dtype="complex128"), stored_cell(state)
    exact = QLAMClassifier(cfg64, cell=cell).double()
    prim = PrimitiveQLAM(cfg64, cell=cell).double()
    try:
        exact.load_state_dict(state["model"])
        prim.load_state_dict(state["model"])
    except (RuntimeError, TypeError) as err:
        raise CheckpointError(f"the checkpoint's weights do not match its model_config "
                              f"({str(err).splitlines()[0][:120]})") from None
    return exact.eval(), prim.eval()


def load_test_split(state: dict, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The checkpoint's test sequences (the first ``limit`` of them when given), float64."""
    spec = DataSpec.from_record(state["data"], limit_test=limit)
    data = spec.load(state["train_config"]["seed"])
    return data.x_test.double(), data.y_test


def query_readouts(prim: PrimitiveQLAM, theta: torch.Tensor, estimator: Any, compiled: Any,
                   template: Any, ledger: Any = None) -> np.ndarray:
    """The K learned bases measured directly: θ (B, T, m) -> readouts (B, K·M), one PUB."""
    layer = prim.blocks[0].mixer
    obs = on_circuit(query_observables(layer.readout_template,
                                       layer.basis[0].detach().double().numpy()),
                     template.circuit.num_qubits)
    values = sequence_parameter_values(template, theta.detach().double().numpy(),
                                       prim.circuit_weights().detach().double().numpy())  # (B, P)
    return expectation_values(estimator, compiled.circuit, compiled.map_observables(obs), values,
                              ledger=ledger)


def evaluate_on(state: dict, backend: str, *, limit: int | None = None, batch_size: int = 64,
                runtime: RuntimeOptions = RuntimeOptions(),
                transpile: TranspileOptions | None = None, out: Path | None = None) -> dict:
    """Logits of a hardware-compatible checkpoint on ``backend`` vs the exact engine's."""
    exact, prim = load_models(state)
    x, y = load_test_split(state, limit)
    target = resolve_backend(backend, seed=runtime.seed).require()
    layout = state.get("layout")
    transpile = transpile or TranspileOptions(seed=state["train_config"]["seed"],
                                              initial_layout=tuple(layout) if layout else None)
    tpl = sequence_template(prim, x.shape[1])
    compiled = target.transpile(tpl.circuit, transpile)
    mode = target.mode("batch")
    estimator = target.estimator(runtime, noise_model=compiled.noise_model, mode=mode,
                                 dynamic=compiled.dynamic)
    ledger = target.ledger(out) if out is not None else None
    t0 = time.perf_counter()
    got, ref = [], []
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size]
                h, theta = prim.angles(xb)  # (B, T, d), (B, T, m)
                ev = query_readouts(prim, theta, estimator, compiled, tpl, ledger)  # (B, K·M)
                got.append(prim.finish(h, torch.as_tensor(ev)))
                ref.append(exact(xb))
    finally:
        if mode is not None:
            mode.close()
    got, ref = torch.cat(got), torch.cat(ref)  # (N, classes)
    acc, acc_exact = (got.argmax(-1) == y).double().mean().item(), \
        (ref.argmax(-1) == y).double().mean().item()
    return {"backend": backend, "samples": len(y), "accuracy": acc, "exact_accuracy": acc_exact,
            "drop": acc_exact - acc, "max_logit_diff": (got - ref).abs().max().item(),
            "prediction_agreement": (got.argmax(-1) == ref.argmax(-1)).double().mean().item(),
            "seconds": time.perf_counter() - t0, "qubits": list(compiled.physical),
            "two_qubit_gates": compiled.two_qubit_gates, "runtime": asdict(runtime),
            "transpile": asdict(transpile), "logits": got.tolist(), "exact_logits": ref.tolist()}
