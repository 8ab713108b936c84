"""The ``qlam-qiskit`` command line: train (``run``) and list backends (``backends``)."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import click
import torch

from ..backends.program import EngineError
from ..backends.statevector import KERNELS
from ..backends.estimator import RuntimeOptions
from ..backends.layouts import coupling_chain
from ..backends.registry import BACKENDS, backend_names, require_available, usable_here
from ..backends.targets import TargetError, resolve_target
from ..backends.transpile import TranspileOptions
from ..data import DATA_ENV, DEFAULT_TASK, TASKS, DataError, DataSpec
from ..models import ModelConfig, QLAMClassifier
from ..models.baselines import BASELINES, BaselineClassifier
from ..training import runtime
from ..training.loop import TrainConfig, seed_everything, train
from ..training.presets import preset

USER_ERRORS = (DataError, EngineError, TargetError, ValueError, FileNotFoundError,
               FileExistsError)


def _fail(err: BaseException) -> click.ClickException:
    """One line for the user, no traceback."""
    return click.ClickException(str(err).splitlines()[0] if str(err) else type(err).__name__)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qlam-qiskit")
def main() -> None:
    """QLAM: quantum recurrent sequence models on Qiskit."""


@main.command("backends")
def backends_cmd() -> None:
    """List the backends and what each needs."""
    for b in BACKENDS:
        ok, why = usable_here(b) if b.available else (False, "not yet in this release")
        state = f"available here ({why})" if ok else f"not available here: {why}"
        click.echo(f"{b.name:14s} {b.summary}\n{'':14s} needs: {b.needs}; {state}")


def _check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is visible to torch here; "
                         "use --device cpu or install a CUDA build of torch")
    torch.device(device)  # raises on malformed names


@main.command("run")
@click.option("--task", type=click.Choice(list(TASKS)), default=DEFAULT_TASK, show_default=True,
              help="Sequence task: " + "; ".join(f"{k}: {v}" for k, v in TASKS.items()))
@click.option("--data-dir", type=click.Path(file_okay=False), envvar=DATA_ENV,
              help=f"Folder with the task's files (or their parent); env {DATA_ENV}.")
@click.option("--gray", is_flag=True, help="scifar10: one luminance channel instead of RGB.")
@click.option("--downsample", type=click.IntRange(1), default=1, show_default=True,
              help="Average PxP pixel blocks first: T shrinks P² times (quick runs; not the "
                   "published tasks).")
@click.option("--backend", default="statevector", show_default=True,
              help="Where circuits run: " + ", ".join(backend_names()) + ".")
@click.option("--model", "kind", type=click.Choice(("qlam",) + BASELINES), default="qlam",
              show_default=True, help="QLAM, or a classical baseline in the same frame "
              "(urnn: same complex state size, unitary recurrence, linear readout).")
@click.option("--qubits", type=click.IntRange(1, 14), help="Qubits per quantum memory.")
@click.option("--heads", type=click.IntRange(1), help="Quantum memories per layer.")
@click.option("--layers", type=click.IntRange(1), help="Stacked QLAM blocks.")
@click.option("--queries", type=click.IntRange(1), help="Learned measurement bases per memory.")
@click.option("--d-model", type=click.IntRange(1), help="Width of the residual stream.")
@click.option("--depth", type=click.IntRange(0), help="Mixing layers per token.")
@click.option("--entanglement", type=click.Choice(["ring", "linear", "full", "none", "coupling"]),
              help="coupling (fake_<device>/ibm_<device>): a ring or path of natively coupled "
              "device qubits, so the cell routes without SWAPs.")
@click.option("--entangler", type=click.Choice(["cz", "cx", "rzz"]))
@click.option("--encoding", type=click.Choice(["rz", "rz_zz", "ry_rz"]))
@click.option("--dtype", type=click.Choice(["complex64", "complex128"]))
@click.option("--kernel", type=click.Choice(KERNELS),
              help="Statevector kernel: fused (numba, CPU), dense (2^n x 2^n unitary per token, "
              "the GPU path), product (gate by gate in torch); auto picks (default).")
@click.option("--position/--no-position", default=None,
              help="Add a learned position embedding to the tokens (default: the task preset).")
@click.option("--epochs", type=click.IntRange(1), help="Training epochs.")
@click.option("--batch-size", type=click.IntRange(1))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak LR, classical params.")
@click.option("--circuit-lr", type=click.FloatRange(min=0, min_open=True),
              help="Peak LR of circuit angles.")
@click.option("--limit-train", type=click.IntRange(1), help="Use at most this many training images.")
@click.option("--limit-test", type=click.IntRange(1), help="Use at most this many test images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(1), help="Torch CPU threads (default: torch's).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Run folder (default: a new folder under ./runs/).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--pool", type=click.Choice(["mean", "last"]),
              help="Summarise the sequence by its mean or its last token (last + --layers 1 "
              "--heads 1 is the hardware-compatible QLAM).")
@click.option("--patch", type=click.IntRange(1), help="P consecutive pixels per token (T/P tokens).")
@click.option("--train-scope", type=click.Choice(["all", "head"]), default="all",
              show_default=True, help="Primitives: head freezes the circuit and everything before "
              "it, training only the classical readout and head.")
@click.option("--gradient", type=click.Choice(["shift", "spsa"]), default="shift",
              show_default=True, help="Primitives: exact parameter shift or SPSA (2 circuits/sample).")
@click.option("--shots", type=click.IntRange(1), help="Primitives: sampling noise of N shots "
              "(default: exact on simulators).")
@click.option("--optimization-level", type=click.IntRange(0, 3), default=1, show_default=True,
              help="Primitives: preset pass manager level.")
@click.option("--resilience-level", type=click.IntRange(0, 2), help="ibm_<device> only.")
@click.option("--dd", is_flag=True, help="Dynamical decoupling (ibm_<device> only).")
@click.option("--twirling", is_flag=True, help="Pauli twirling (ibm_<device> only).")
def run_cmd(task, data_dir, gray, downsample, backend, kind, epochs, batch_size, lr, circuit_lr, limit_train,
            limit_test, seed, device, threads, out, resume, quiet, patch, train_scope, gradient,
            shots, optimization_level, resilience_level, dd, twirling, **model_opts) -> None:
    """Train a QLAM classifier on a sequence task and report its test accuracy."""
    primitives = {"scope": train_scope, "gradient": gradient,
                  "transpile": TranspileOptions(optimization_level, seed),
                  "runtime": RuntimeOptions(shots=shots, seed=seed,
                                            resilience_level=resilience_level,
                                            dynamical_decoupling=dd, twirling=twirling)}
    try:
        require_available(backend)
        if backend == "statevector" and (train_scope != "all" or gradient != "shift" or shots
                                         or resilience_level is not None or dd or twirling):
            raise ValueError("--train-scope/--gradient/--shots/--resilience-level/--dd/"
                             "--twirling apply to primitives backends (aer, fake_<device>, ...)")
        _check_device(device)
        nthreads = runtime.configure(threads)
        if resume:
            if not out:
                raise ValueError("--resume needs --out DIR pointing at the run to continue")
            ckpt = Path(out) / "checkpoint.pt"
            if not ckpt.is_file():
                raise FileNotFoundError(f"{ckpt} not found: nothing to resume; drop --resume")
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            saved = state.get("backend", "statevector")
            if backend not in ("statevector", saved):
                raise ValueError(f"{out} was trained on {saved}: resume with --backend {saved} "
                                 "or drop --backend")
            backend = saved
            if saved != "statevector":  # the primitives settings the run was started with
                t = dict(state["transpile"])
                t["initial_layout"] = tuple(t["initial_layout"]) if t.get("initial_layout") else None
                primitives.update(scope=state["train_scope"], gradient=state["gradient"],
                                  transpile=TranspileOptions(**t),
                                  runtime=RuntimeOptions(**state["runtime"]))
                if state.get("layout"):
                    primitives["layout"] = tuple(state["layout"])
            mcfg = ModelConfig(**state["model_config"])
            kind = state.get("model_kind", "qlam")
            tcfg = TrainConfig(**{**state["train_config"], "device": device})
            if epochs:
                tcfg.epochs = epochs
            spec = DataSpec.from_record(state["data"], data_dir=data_dir)
            position = mcfg.max_len > 0
        else:
            spec = DataSpec(task, data_dir, gray, downsample, patch, limit_train, limit_test)
            p = preset(task, downsample)
            position = model_opts.pop("position")
            position = p["position"] if position is None else position
            mcfg = ModelConfig(**{**p["model"], **{k: v for k, v in model_opts.items()
                                                  if v is not None}})
            given = {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                     "circuit_lr": circuit_lr}
            tcfg = TrainConfig(**{**p["train"], **{k: v for k, v in given.items() if v is not None},
                                  "seed": seed, "device": device})
        out = Path(out) if out else Path("runs") / f"{spec.task}-{time.strftime('%Y%m%d-%H%M%S')}"
        if not resume and (out / "checkpoint.pt").exists():
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it "
                                  "or choose another --out")
        if backend != "statevector":
            target = resolve_target(backend, seed=tcfg.seed)  # GPU/account problems first
            if kind != "qlam":
                raise ValueError(f"--model {kind} has no circuit; primitives backends run QLAM")
            if not resume:
                bad = [f"--{k} {model_opts[k]}" for k in ("layers", "heads")
                       if model_opts.get(k) not in (None, 1)]
                if bad or model_opts.get("pool") == "mean":
                    raise ValueError(f"{' '.join(bad) or '--pool mean'}: primitives backends "
                                     "train the hardware-compatible QLAM (--layers 1 --heads 1 "
                                     "--pool last); drop the option")
                mcfg.layers, mcfg.heads, mcfg.pool = 1, 1, "last"
                if mcfg.entanglement == "coupling":
                    if target.kind not in ("fake", "ibm"):
                        raise ValueError("--entanglement coupling follows a device's coupling "
                                         "map: use --backend fake_<device> or ibm_<device>")
                    layout, ring = coupling_chain(target.backend, mcfg.qubits)
                    mcfg.entanglement = "ring" if ring else "linear"
                    primitives["layout"] = layout
                    primitives["transpile"] = replace(primitives["transpile"],
                                                      initial_layout=layout)
            try:
                result = deploy.run_primitives(
                    spec=spec, target=target, mcfg=mcfg, tcfg=tcfg, out=out, resume=resume,
                    quiet=quiet, position=position, **primitives)
            except KeyboardInterrupt:
                raise click.ClickException(f"interrupted; continue with: qlam-qiskit run "
                                           f"--resume --out {out}") from None
            click.echo(f"test accuracy {result['test_accuracy']:.4f} (val "
                       f"{result['val_accuracy']:.4f}) after {result['epochs']} epochs on "
                       f"{backend}, {result['train_seconds']:.0f}s training; results in "
                       f"{out}/result.json")
            return
        if mcfg.entanglement == "coupling":
            raise ValueError("--entanglement coupling follows a device's coupling map: use "
                             "--backend fake_<device> or ibm_<device>")
        data = spec.load(tcfg.seed)
        mcfg.d_input, mcfg.num_classes = data.channels, data.num_classes
        if not resume:
            mcfg.max_len = data.seq_len if position else 0
        seed_everything(tcfg.seed)
        model = QLAMClassifier(mcfg) if kind == "qlam" else BaselineClassifier(kind, mcfg)
    except USER_ERRORS as err:
        raise _fail(err) from None

    n_params = sum(p.numel() for p in model.parameters())
    click.echo(f"qlam-qiskit run: task {spec.task} ({len(data.x_train)} train / {len(data.x_val)} val / "
               f"{len(data.x_test)} test, T={data.seq_len}, C={data.channels}), backend {backend}, "
               f"model {kind}: {mcfg.layers} layer(s) x {mcfg.heads} memories x {mcfg.qubits} qubits, "
               f"{n_params:,} parameters, {tcfg.epochs} epochs, device {device}, "
               f"{nthreads} thread(s) -> {out}")
    meta = {"model": kind, "model_kind": kind, "backend": backend, "model_config": asdict(mcfg),
            "data": spec.record(data)}
    try:
        result = train(model, data, tcfg, out, meta=meta, resume=resume, progress=not quiet)
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; continue with: qlam-qiskit run --resume "
                                   f"--out {out}") from None
    except USER_ERRORS as err:
        raise _fail(err) from None
    click.echo(f"test accuracy {result['test_accuracy']:.4f} (val {result['val_accuracy']:.4f}) "
               f"after {result['epochs']} epochs, {result['train_seconds']:.0f}s training; "
               f"results in {out}/result.json")



from . import deploy  # noqa: E402 - the primitives commands register themselves on main

deploy.register(main, _fail, USER_ERRORS)

from .bench import bench_cmd  # noqa: E402  (registered after main exists)

main.add_command(bench_cmd)

from .report import report_cmd  # noqa: E402  (registered after main exists)

main.add_command(report_cmd)
