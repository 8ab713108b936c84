"""``eval``, ``export`` and ``account``: deploy trained weights on a backend, write bound
circuits, save an IBM Quantum account. The work happens in ``qlam_qiskit.deploy``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..backends import backend_names
from ..backends.primitives.devices import network_problem
from ..backends.primitives.estimator import RuntimeOptions
from ..backends.primitives.transpile import TranspileOptions
from ..deploy import FORMATS, evaluate_on, export_sample
from ..deploy.account import save_account
from ..io import check_writable, load_checkpoint, save_json
from .common import user_errors

TOKEN_ENV = "QISKIT_IBM_TOKEN"


@click.command("eval")
@click.option("--checkpoint", required=True, type=click.Path(),
              help="A run folder or its checkpoint.pt (hardware-compatible QLAM).")
@click.option("--backend", required=True, help=", ".join(backend_names()) + ".")
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
@user_errors
def eval_cmd(checkpoint, backend, limit, shots, precision, resilience_level, dd, twirling,
             optimization_level, seed, batch_size, out) -> None:
    """Evaluate statevector-trained weights on a backend: accuracy and drop vs exact."""
    state = load_checkpoint(checkpoint)
    if out:
        check_writable(out)  # before any job is paid for
    layout = state.get("layout")
    rt = RuntimeOptions(shots=shots, precision=precision, seed=seed,
                        resilience_level=resilience_level, dynamical_decoupling=dd,
                        twirling=twirling)
    tr = TranspileOptions(optimization_level, seed, tuple(layout) if layout else None)
    rep = evaluate_on(state, backend, limit=limit, batch_size=batch_size, runtime=rt,
                      transpile=tr, out=Path(out) if out else None)
    click.echo(f"eval on {backend}: accuracy {rep['accuracy']:.4f} vs exact "
               f"{rep['exact_accuracy']:.4f} (drop {rep['drop']:+.4f}) on {rep['samples']} "
               f"test samples; max |logit - exact| {rep['max_logit_diff']:.2e}, predictions "
               f"agree {rep['prediction_agreement']:.1%}; {rep['seconds']:.1f}s")
    if out:
        save_json(rep, Path(out) / "eval.json")


@click.command("export")
@click.option("--checkpoint", required=True, type=click.Path())
@click.option("--sample", type=click.IntRange(0), default=0, show_default=True,
              help="Index into the test split.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="qpy",
              show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False))
@user_errors
def export_cmd(checkpoint, sample, fmt, out) -> None:
    """Write one input's bound circuit, its observables and the exact expectation values."""
    state = load_checkpoint(checkpoint)
    check_writable(out)
    info = export_sample(state, sample, fmt, Path(out))
    click.echo(f"wrote {info['circuit']} with {info['observables']} observables and the "
               f"exact engine's values to {out}")


@click.group("account")
def account() -> None:
    """IBM Quantum account for ibm_<device> backends."""

@account.command("save")
@click.option("--channel", default="ibm_quantum_platform", show_default=True)
@click.option("--instance", help="CRN or service name of the instance (optional).")
@click.option("--name", help="Save under this account name.")
@click.option("--overwrite", is_flag=True, help="Replace an account saved before.")
@click.option("--filename", type=click.Path(dir_okay=False), help="Accounts file to write.")
@user_errors
def account_save(channel, instance, name, overwrite, filename) -> None:
    """Save a token with QiskitRuntimeService.save_account (prompt or QISKIT_IBM_TOKEN).

    The accounts file is readable by you only (0600). Without --name the account becomes the
    default; --name saves another one beside it (the first one saved becomes the default)."""
    token = os.environ.get(TOKEN_ENV) or click.prompt("IBM Quantum API key", hide_input=True,
                                                      show_default=False)
    try:
        saved = save_account(token, channel=channel, instance=instance, name=name,
                             overwrite=overwrite, filename=filename)
    finally:
        token = None  # noqa: F841 - drop the reference as soon as it is used
    problem = network_problem()
    click.echo(saved + (f"; not verified: {problem}" if problem else
                        "; verify with `qlam-qiskit backends`"))
