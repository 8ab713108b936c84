"""``qlam-qiskit run``: parse the options, plan the run (``training.run``), train it."""

from __future__ import annotations

from pathlib import Path

import click

from ..backends import EXACT, backend_names
from ..backends.engine import DTYPES, KERNELS
from ..backends.primitives.estimator import RuntimeOptions
from ..backends.primitives.qnn import GRADIENTS
from ..backends.primitives.transpile import TranspileOptions
from ..circuits.cell import ENCODINGS, ENTANGLEMENTS, ENTANGLERS
from ..circuits.custom import load_cell
from ..data import DATA_ENV, DEFAULT_TASK, TASKS, DataSpec
from ..errors import BackendError, QLAMError, StorageError
from ..io import CHECKPOINT
from ..models.qlam import MEMORIES, POOLS
from ..training import runtime
from ..training.distributed import is_main_process
from ..training.plan import SCOPES, PrimitiveOptions
from ..training.run import MODEL_KINDS, execute, plan_run, resume_run
from .common import Failure, Terminated, fail, interrupted, user_errors

MODEL_OPTIONS = ("qubits", "heads", "layers", "queries", "d_model", "depth", "entanglement",
                 "entangler", "encoding", "dtype", "kernel", "pool")
"""``run`` options that set ModelConfig fields (None when not given: the task preset decides)."""
RESUME_OPTIONS = ("out", "resume", "epochs", "backend", "device", "threads", "data_dir", "quiet")
"""What may be given with --resume; a resumed run keeps every other setting of its checkpoint."""


def given_with_resume() -> list[str]:
    """The options given on the command line that --resume does not take, as flags."""
    ctx = click.get_current_context()
    return [p.opts[0] for p in ctx.command.params if p.name not in RESUME_OPTIONS
            and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]


def next_step(out) -> str:
    """What to run after a run stopped: resume from its checkpoint, or start it again."""
    if out is not None and (Path(out) / CHECKPOINT).is_file():
        return f"continue with: qlam-qiskit run --resume --out {out}"
    return "no epoch was saved: run the same command again"


@click.command("run")
@click.option("--task", type=click.Choice(list(TASKS)), default=DEFAULT_TASK, show_default=True,
              help="Sequence task: " + "; ".join(f"{k}: {v}" for k, v in TASKS.items()))
@click.option("--data-dir", type=click.Path(file_okay=False), envvar=DATA_ENV,
              help=f"Folder with the task's files (or their parent); env {DATA_ENV}.")
@click.option("--gray", is_flag=True, help="scifar10: one luminance channel instead of RGB.")
@click.option("--downsample", type=click.IntRange(1), default=1, show_default=True,
              help="Average PxP pixel blocks first: T shrinks P² times (quick runs; not the "
                   "published tasks).")
@click.option("--backend", default=EXACT, show_default=True,
              help="Where circuits run: " + ", ".join(backend_names()) + ".")
@click.option("--model", "kind", type=click.Choice(MODEL_KINDS), default="qlam",
              show_default=True, help="QLAM, or a classical baseline in the same frame "
              "(urnn: same complex state size, unitary recurrence, linear readout).")
@click.option("--cell", "cell_file", type=click.Path(dir_okay=False),
              help="Your own cell circuit, a QPY or OpenQASM 3 file: per-token input angles in a "
              "vector x (or θ), shared weights in a vector w (see qlam_qiskit.circuits.custom). "
              "It replaces --qubits/--depth/--entanglement/--entangler/--encoding.")
@click.option("--qubits", type=click.IntRange(1, 14), help="Qubits per quantum memory.")
@click.option("--heads", type=click.IntRange(1), help="Quantum memories per layer.")
@click.option("--layers", type=click.IntRange(1), help="Stacked QLAM blocks.")
@click.option("--queries", type=click.IntRange(1), help="Learned measurement bases per memory.")
@click.option("--d-model", type=click.IntRange(1), help="Width of the residual stream.")
@click.option("--depth", type=click.IntRange(0), help="Mixing layers per token.")
@click.option("--entanglement", type=click.Choice(ENTANGLEMENTS + ("coupling",)),
              help="coupling (fake_<device>/ibm_<device>): a ring or path of natively coupled "
              "device qubits, so the cell routes without SWAPs.")
@click.option("--entangler", type=click.Choice(ENTANGLERS))
@click.option("--encoding", type=click.Choice(ENCODINGS))
@click.option("--dtype", type=click.Choice(list(DTYPES)))
@click.option("--kernel", type=click.Choice(list(KERNELS)),
              help="Statevector kernel (see SequenceEngine); auto picks (default).")
@click.option("--memory", type=click.Choice(MEMORIES),
              help="pure: a statevector per memory; damped: a density matrix whose qubits relax "
              "at learned rates (amplitude damping, a reset ancilla per qubit on hardware).")
@click.option("--gate/--no-gate", default=None,
              help="Gate each layer's readout by its input token, σ(G x_t + g) (default: the preset's).")
@click.option("--selective/--no-selective", default=None,
              help="--memory damped: each token sets its memories' damping rates (on a circuit: "
              "per-token damping angles).")
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
@click.option("--pool", type=click.Choice(POOLS),
              help="Summarise the sequence by its mean or its last token (last + --layers 1 "
              "--heads 1 is the hardware-compatible QLAM).")
@click.option("--patch", type=click.IntRange(1), help="P consecutive pixels per token (T/P tokens).")
@click.option("--train-scope", type=click.Choice(SCOPES), default="all",
              show_default=True, help="Primitives: head freezes the circuit and everything before "
              "it, training only the classical readout and head.")
@click.option("--gradient", type=click.Choice(list(GRADIENTS)), default="shift",
              show_default=True, help="Primitives: exact parameter shift or SPSA (2 circuits/sample).")
@click.option("--shots", type=click.IntRange(1), help="Primitives: sampling noise of N shots "
              "(default: exact on simulators).")
@click.option("--optimization-level", type=click.IntRange(0, 3), default=1, show_default=True,
              help="Primitives: preset pass manager level.")
@click.option("--resilience-level", type=click.IntRange(0, 2), help="ibm_<device> only.")
@click.option("--dd", is_flag=True, help="Dynamical decoupling (ibm_<device> only).")
@click.option("--twirling", is_flag=True, help="Pauli twirling (ibm_<device> only).")
@user_errors
def run_cmd(task, data_dir, gray, downsample, backend, kind, position, epochs, batch_size, lr,
            circuit_lr, limit_train, limit_test, seed, device, threads, out, resume, quiet, patch,
            train_scope, gradient, shots, optimization_level, resilience_level, dd, twirling,
            cell_file, **model) -> None:
    """Train a QLAM classifier on a sequence task and report its test accuracy.

    Under torchrun (``torchrun --nproc-per-node N --no-python qlam-qiskit run ...``) the N
    processes train one run data-parallel; rank 0 prints and writes the run folder."""
    plan = None
    try:
        runtime.configure(threads)
        if resume:
            if not out:
                raise QLAMError("--resume needs --out DIR pointing at the run to continue")
            given = backend if backend != EXACT else None
            plan = resume_run(out, backend=given, device=device, epochs=epochs, data_dir=data_dir)
            extra = given_with_resume()
            if extra:
                raise QLAMError(f"{' '.join(extra)}: a resumed run keeps the settings of its "
                                "checkpoint; drop them (with --resume only --epochs, --device, "
                                "--threads, --data-dir and --quiet apply)")
        else:
            prim = PrimitiveOptions(train_scope, gradient, TranspileOptions(optimization_level, seed),
                                    RuntimeOptions(shots=shots, seed=seed,
                                                   resilience_level=resilience_level,
                                                   dynamical_decoupling=dd, twirling=twirling))
            spec = DataSpec(task, data_dir, gray, downsample, patch, limit_train, limit_test)
            train = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "circuit_lr": circuit_lr}
            plan = plan_run(spec=spec, backend=backend, kind=kind, model=model, train=train,
                            position=position, seed=seed, device=device, out=out, primitives=prim,
                            cell=load_cell(cell_file) if cell_file else None)
        result = execute(plan, progress=not quiet, echo=click.echo)
    except (KeyboardInterrupt, Terminated) as err:
        raise interrupted(err, next_step(plan.out if plan else out)) from None
    except (StorageError, BackendError) as err:  # the disk or the device: fix it, then go on
        if plan is None:
            raise
        raise Failure(f"{fail(err).message}; then {next_step(plan.out)}") from None
    if not is_main_process():
        return
    where = "" if plan.backend.exact else f" on {plan.backend.name}"
    click.echo(f"test accuracy {result['test_accuracy']:.4f} (val {result['val_accuracy']:.4f}) "
               f"after {result['epochs']} epochs{where}, {result['train_seconds']:.0f}s training; "
               f"results in {plan.out}/result.json")
