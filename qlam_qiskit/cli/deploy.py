"""The primitives path of the CLI: ``run --backend aer|aer_gpu|fake_*|ibm_*``, ``eval``, ``export``,
``account save``. Registered on ``main`` by cli/main.py.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from ..backends.jobs import JobLedger
from ..backends.estimator import RuntimeOptions, expectation_values, make_estimator
from ..backends.targets import Target, TargetError, network_problem, resolve_target
from ..backends.transpile import TranspileOptions, compile_for
from ..circuits.readout import query_observables
from ..circuits.sequence import sequence_parameter_values
from ..data import DataSpec
from ..models import ModelConfig, QLAMClassifier
from ..models.primitive import PrimitiveQLAM, attach_backend, hardware_problem, sequence_template
from ..training.checkpoint import save_bytes, save_json, save_text
from ..training.loop import TrainConfig, seed_everything, train

TOKEN_ENV = "QISKIT_IBM_TOKEN"


def _echo(msg: str, quiet: bool = False) -> None:
    """Header and cost lines: printed even with --quiet (which only hides progress bars)."""
    click.echo(msg)


def _ledger(target: Target, out: Path) -> JobLedger | None:
    """IBM devices: the run folder's jobs.jsonl, so a resumed run collects jobs it already paid for."""
    if target.kind != "ibm":
        return None
    return JobLedger(out / "jobs.jsonl", retrieve=target.service.job if target.service else None)


def _runtime_mode(target: Target, kind: str) -> Any:
    """A Runtime Session (training) or Batch (evaluation) on IBM devices; None locally."""
    if target.kind != "ibm":
        return None
    from qiskit_ibm_runtime import Batch, Session

    return (Session if kind == "session" else Batch)(backend=target.backend)


def _cost_report(model: PrimitiveQLAM, qnn: Any, data: Any, tcfg: TrainConfig, scope: str,
                 gradient: str, target: Target, quiet: bool) -> dict:
    """Print circuits per step and a timed estimate, with the levers that make it cheaper."""
    grad = qnn.batched_gradient
    ni, nw = qnn.num_inputs, qnn.num_weights
    wrt = np.arange(ni + nw)
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
    _echo(f"cost on {target.name}: {per_step:,} circuit executions per step "
          f"(batch {b} x (1 forward + {per_sample} for the {gradient} gradient"
          + (f": 2 x {occ} parameter occurrences" if occ is not None and scope != 'head' else "")
          + f")), {steps} steps/epoch, {qnn.output_shape[0]} observables per circuit; "
          f"timed probe {probe:.3f} s/sample -> about {est:.0f} s in all", quiet)
    if scope != "head" or gradient != "spsa":
        _echo("  cheaper: --train-scope head (circuit frozen, classical parts trained, each "
              "sample's circuit run once); --patch P (P pixels per token: T/P tokens); "
              "--gradient spsa (2 circuits per sample)", quiet)
    return {"circuits_per_step": per_step, "probe_seconds_per_sample": probe,
            "estimated_seconds": est, "steps_per_epoch": steps}


def run_primitives(*, spec: DataSpec, target: Target, mcfg: ModelConfig, tcfg: TrainConfig,
                   out: Path, resume: bool, quiet: bool, scope: str, gradient: str,
                   transpile: TranspileOptions, runtime: RuntimeOptions, position: bool,
                   layout: tuple[int, ...] | None = None) -> dict:
    """Train the hardware-compatible QLAM on a primitives backend through EstimatorQNN +
    TorchConnector; same outputs as the statevector run (checkpoint, metrics, result)."""
    backend = target.name
    runtime.check_for(target)
    data = spec.load(tcfg.seed)
    mcfg.d_input, mcfg.num_classes = data.channels, data.num_classes
    if not resume:
        mcfg.max_len = data.seq_len if position else 0
    seed_everything(tcfg.seed)
    model = PrimitiveQLAM(mcfg)
    if scope == "head":
        model.freeze_circuit()
    out.mkdir(parents=True, exist_ok=True)
    ledger = _ledger(target, out)
    mode = _runtime_mode(target, "session")
    t0 = time.perf_counter()
    qnn, compiled = attach_backend(model, target, data.seq_len, transpile=transpile,
                                   runtime=runtime, gradient=gradient,
                                   input_gradients=scope != "head", seed=tcfg.seed, mode=mode,
                                   ledger=ledger)
    n_params = sum(p.numel() for p in model.parameters())
    _echo(f"qlam-qiskit run: task {spec.task} ({len(data.x_train)} train / {len(data.x_val)} val / "
          f"{len(data.x_test)} test, T={data.seq_len}, C={data.channels}), backend {backend} "
          f"(EstimatorQNN + TorchConnector), hardware-compatible QLAM: 1 memory x {mcfg.qubits} "
          f"qubits read at the end, {n_params:,} parameters, train scope {scope}, "
          f"{tcfg.epochs} epochs -> {out}", quiet)
    _echo(f"transpiled for {backend} in {time.perf_counter() - t0:.1f}s"
          f"{' (cached ISA circuit)' if compiled.cached else ''}: "
          f"{compiled.circuit.num_qubits} qubits {list(compiled.physical)[:8]}, "
          f"{compiled.two_qubit_gates} two-qubit gates, depth {compiled.circuit.depth()}", quiet)
    cost = _cost_report(model, qnn, data, tcfg, scope, gradient, target, quiet)
    meta = {"model": "qlam", "model_kind": "qlam", "backend": backend,
            "model_config": asdict(mcfg), "train_scope": scope, "gradient": gradient,
            "transpile": asdict(transpile), "runtime": asdict(runtime), "cost": cost,
            "layout": list(layout) if layout else None,
            "data": spec.record(data)}
    try:
        result = train(model, data, tcfg, out, meta=meta, resume=resume, progress=not quiet)
    finally:
        if mode is not None:
            mode.close()
    result["qnn_calls"] = dict(qnn.calls)
    save_json(result, out / "result.json")
    return result


def _load_checkpoint(path: str) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found; pass a run folder or its checkpoint.pt")
    return torch.load(p, map_location="cpu", weights_only=False)


def _models(state: dict) -> tuple[QLAMClassifier, PrimitiveQLAM]:
    """The exact model (complex128, float64) and the primitives model, both with its weights."""
    cfg = ModelConfig(**state["model_config"])
    problem = hardware_problem(cfg, state.get("model_kind", "qlam"))
    if problem:
        raise ValueError(problem)
    cfg64 = replace(cfg, dtype="complex128")
    exact, prim = QLAMClassifier(cfg64).double(), PrimitiveQLAM(cfg64).double()
    exact.load_state_dict(state["model"])
    prim.load_state_dict(state["model"])
    return exact.eval(), prim.eval()


def _test_data(state: dict, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The checkpoint's test sequences (the first ``limit`` of them when given), float64."""
    spec = DataSpec.from_record(state["data"], limit_test=limit)
    data = spec.load(state["train_config"]["seed"])
    return data.x_test.double(), data.y_test


def query_readouts(prim: PrimitiveQLAM, theta: torch.Tensor, estimator: Any, compiled: Any,
                   template: Any, ledger: Any = None) -> np.ndarray:
    """The K learned bases measured directly: θ (B, T, m) -> readouts (B, K·M), one PUB."""
    layer = prim.blocks[0].mixer
    obs = query_observables(layer.readout_template, layer.basis[0].detach().double().numpy())
    values = sequence_parameter_values(template, theta.detach().double().numpy(),
                                       layer.mix[0].detach().double().numpy())  # (B, P)
    return expectation_values(estimator, compiled.circuit, compiled.map_observables(obs), values,
                              ledger=ledger)


def evaluate_on(state: dict, backend: str, *, limit: int | None = None, batch_size: int = 64,
                runtime: RuntimeOptions = RuntimeOptions(),
                transpile: TranspileOptions | None = None, out: Path | None = None) -> dict:
    """Logits of a hardware-compatible checkpoint on ``backend`` vs the exact engine's."""
    exact, prim = _models(state)
    x, y = _test_data(state, limit)
    target = resolve_target(backend, seed=runtime.seed)
    layout = state.get("layout")
    transpile = transpile or TranspileOptions(seed=state["train_config"]["seed"],
                                              initial_layout=tuple(layout) if layout else None)
    tpl = sequence_template(prim, x.shape[1])
    compiled = compile_for(tpl.circuit, target, transpile)
    mode = _runtime_mode(target, "batch")
    estimator = make_estimator(target, runtime, noise_model=compiled.noise_model, mode=mode)
    ledger = _ledger(target, out) if out is not None else None
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


def export_sample(state: dict, sample: int, fmt: str, out: Path) -> dict:
    """Bound sequence circuit of one test input, its K·M observables and the exact values."""
    from qiskit import qasm3, qpy

    exact, prim = _models(state)
    x, _ = _test_data(state, None)
    if not 0 <= sample < len(x):
        raise ValueError(f"--sample {sample} is outside the test split (0..{len(x) - 1})")
    layer = prim.blocks[0].mixer
    with torch.no_grad():
        _, theta = prim.angles(x[sample:sample + 1])  # (1, T, m)
        tpl = sequence_template(prim, x.shape[1])
        values = sequence_parameter_values(tpl, theta[0].numpy(), layer.mix[0].numpy())  # (P,)
        circuit = tpl.circuit.assign_parameters(dict(zip(tpl.circuit.parameters, values)))
        el = exact.blocks[0].mixer
        th = el.proj(exact.blocks[0].norm1(exact.embed_tokens(x[sample:sample + 1])))
        state_t = el.engine.run(th.transpose(0, 1).unsqueeze(1), el.mix, all_states=False)
        evs = el.measure(state_t, el.basis).reshape(-1).tolist()  # (K·M,) exact engine
    obs = query_observables(layer.readout_template, layer.basis[0].detach().numpy())
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"sample{sample}"
    if fmt == "qpy":
        path = stem.with_suffix(".qpy")
        buf = io.BytesIO()
        qpy.dump(circuit, buf)
        save_bytes(buf.getvalue(), path)
    else:
        path = stem.with_suffix(".qasm")
        save_text(qasm3.dumps(circuit), path)
    save_json({"num_qubits": circuit.num_qubits, "order": "query-major: K queries x M terms",
               "terms": [list(t) for t in layer.readout_template.terms],
               "observables": [{"labels": op.paulis.to_labels(),
                                "coeffs": [float(c.real) for c in op.coeffs]} for op in obs]},
              stem.with_name(f"sample{sample}_observables.json"))
    save_json({"expectation_values": evs, "engine": "statevector (complex128)",
               "sample": sample}, stem.with_name(f"sample{sample}_values.json"))
    return {"circuit": str(path), "observables": len(obs)}


def register(main: click.Group, fail: Any, user_errors: tuple) -> None:
    """Add ``eval``, ``export`` and ``account`` to the ``main`` command group."""
    errors = user_errors + (TargetError,)

    @main.command("eval")
    @click.option("--checkpoint", required=True, type=click.Path(),
                  help="A run folder or its checkpoint.pt (hardware-compatible QLAM).")
    @click.option("--backend", required=True, help="aer, aer_gpu, fake_<device>, ibm_<device>.")
    @click.option("--limit", type=click.IntRange(1), help="Evaluate at most this many test images.")
    @click.option("--shots", type=click.IntRange(1), help="Sampling noise of this many shots.")
    @click.option("--precision", type=click.FloatRange(min=0), help="Target standard error.")
    @click.option("--resilience-level", type=click.IntRange(0, 2), help="IBM devices only.")
    @click.option("--dd", is_flag=True, help="Dynamical decoupling (IBM devices only).")
    @click.option("--twirling", is_flag=True, help="Pauli twirling (IBM devices only).")
    @click.option("--optimization-level", type=click.IntRange(0, 3), default=1, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
    @click.option("--out", type=click.Path(file_okay=False), help="Write eval.json here.")
    def eval_cmd(checkpoint, backend, limit, shots, precision, resilience_level, dd, twirling,
                 optimization_level, seed, batch_size, out) -> None:
        """Evaluate statevector-trained weights on a backend: accuracy and drop vs exact."""
        try:
            state = _load_checkpoint(checkpoint)
            layout = state.get("layout")
            rt = RuntimeOptions(shots=shots, precision=precision, seed=seed,
                                resilience_level=resilience_level, dynamical_decoupling=dd,
                                twirling=twirling)
            tr = TranspileOptions(optimization_level, seed, tuple(layout) if layout else None)
            rep = evaluate_on(state, backend, limit=limit, batch_size=batch_size, runtime=rt,
                              transpile=tr, out=Path(out) if out else None)
        except errors as err:
            raise fail(err) from None
        click.echo(f"eval on {backend}: accuracy {rep['accuracy']:.4f} vs exact "
                   f"{rep['exact_accuracy']:.4f} (drop {rep['drop']:+.4f}) on {rep['samples']} "
                   f"test samples; max |logit - exact| {rep['max_logit_diff']:.2e}, predictions "
                   f"agree {rep['prediction_agreement']:.1%}; {rep['seconds']:.1f}s")
        if out:
            save_json(rep, Path(out) / "eval.json")

    @main.command("export")
    @click.option("--checkpoint", required=True, type=click.Path())
    @click.option("--sample", type=click.IntRange(0), default=0, show_default=True,
                  help="Index into the test split.")
    @click.option("--format", "fmt", type=click.Choice(["qpy", "qasm3"]), default="qpy",
                  show_default=True)
    @click.option("--out", required=True, type=click.Path(file_okay=False))
    def export_cmd(checkpoint, sample, fmt, out) -> None:
        """Write one input's bound circuit, its observables and the exact expectation values."""
        try:
            info = export_sample(_load_checkpoint(checkpoint), sample, fmt, Path(out))
        except errors as err:
            raise fail(err) from None
        click.echo(f"wrote {info['circuit']} with {info['observables']} observables and the "
                   f"exact engine's values to {out}")

    @main.group("account")
    def account() -> None:
        """IBM Quantum account for ibm_<device> backends."""

    @account.command("save")
    @click.option("--channel", default="ibm_quantum_platform", show_default=True)
    @click.option("--instance", help="CRN or service name of the instance (optional).")
    @click.option("--name", help="Save under this account name.")
    @click.option("--overwrite", is_flag=True, help="Replace an account saved before.")
    @click.option("--filename", type=click.Path(dir_okay=False), help="Accounts file to write.")
    def account_save(channel, instance, name, overwrite, filename) -> None:
        """Save a token with QiskitRuntimeService.save_account (prompt or QISKIT_IBM_TOKEN)."""
        from qiskit_ibm_runtime import QiskitRuntimeService

        token = os.environ.get(TOKEN_ENV) or click.prompt("IBM Quantum API key", hide_input=True,
                                                          show_default=False)
        try:
            QiskitRuntimeService.save_account(token=token.strip(), channel=channel,
                                              instance=instance, name=name, overwrite=overwrite,
                                              filename=filename, set_as_default=True)
        except Exception as err:  # noqa: BLE001 - never print the token: only the error type
            msg = str(err).replace(token, "***").splitlines()[0] if str(err) else ""
            raise click.ClickException(f"could not save the account: {type(err).__name__}"
                                       f"{': ' + msg if msg else ''}") from None
        finally:
            token = None  # noqa: F841 - drop the reference as soon as it is used
        problem = network_problem()
        click.echo("account saved" + (f"; not verified: {problem}" if problem else
                                      "; verify with `qlam-qiskit backends`"))
