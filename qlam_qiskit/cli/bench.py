"""``qlam-qiskit bench``: a grid of models × tasks × seeds on one budget, and the comparison table."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import click
from tqdm.auto import tqdm

from ..bench import EXECUTORS, PROTOCOLS, LocalExecutor, RayExecutor, plan, run_grid, summarise
from ..bench.executors import cell_resources
from ..bench.grid import command, finished, retire_stale
from ..bench.protocol import MODELS, Protocol, results_settings
from ..bench.tune import apply, check, load_best, searched, studies, study_name, tune
from ..data import DATA_ENV, TASKS
from ..errors import QLAMError
from ..io import save_json
from ..training.loop import check_device
from .common import int_list, name_list, user_errors

BENCH_TASKS = tuple(t for t in TASKS if t != "mnist-mini")
"""Tasks a grid can run: the full-length ones."""


@click.command("bench")
@click.option("--protocol", "name", type=click.Choice(list(PROTOCOLS)), default="cpu",
              show_default=True, help="; ".join(f"{k}: {p.about}" for k, p in PROTOCOLS.items()))
@click.option("--models", help=f"Comma-separated subset of {','.join(MODELS)}.")
@click.option("--tasks", help="Comma-separated subset of " + ",".join(BENCH_TASKS) + ".")
@click.option("--seeds", help="Comma-separated seeds, e.g. 0,1,2.")
@click.option("--downsample", help="Comma-separated pixel downsampling factors, e.g. 4,2,1 for accuracy against "
                              "sequence length.")
@click.option("--epochs", type=click.IntRange(1), help="Override the protocol's epochs.")
@click.option("--limit-train", type=click.IntRange(1), help="Override training images per run.")
@click.option("--limit-test", type=click.IntRange(1), help="Override test images per run.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Override the classical learning rate of every model (sensitivity checks).")
@click.option("--circuit-lr", type=click.FloatRange(min=0, min_open=True),
              help="Override the circuit-angle learning rate (QLAM).")
@click.option("--tune-trials", type=click.IntRange(0), help="Optuna trials per model and task "
              "(the same for every model) tuning lr (and qlam's circuit lr) on validation before "
              "the grid; 0: the protocol's fixed rates. Default: the protocol's.")
@click.option("--tune-epochs", type=click.IntRange(1), help="Epochs of every tuning run.")
@click.option("--tune-limit-train", type=click.IntRange(2), help="Training images of every "
              "tuning run.")
@click.option("--tune-task", type=click.Choice(BENCH_TASKS), help="Tune on this task only and "
              "train every task with its rates (default: the protocol's; full: smnist).")
@click.option("--jobs", type=click.IntRange(1), help="Runs at once (default: the protocol's).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="Torch threads per run.")
@click.option("--device", help="Override the protocol's device (cpu, cuda).")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar=DATA_ENV,
              help=f"Folder with the task folders (mnist/, fashion-mnist/, cifar10/); env {DATA_ENV}.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Grid folder (default: runs/bench-<protocol>). Rerun to resume.")
@click.option("--dry-run", is_flag=True, help="List the cells and their commands; run nothing.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="local: cells as subprocesses here, --jobs at a time; ray: every cell a Ray "
              "task asking for a GPU (cuda) or --threads CPUs (needs pip install "
              "\"qlam-qiskit[ray]\").")
@click.option("--address", help="--executor ray: the Ray cluster to join (auto, HOST:6379, "
              "ray://HOST:10001); default: a local Ray instance on this machine's cores.")
@user_errors
def bench_cmd(name, models, tasks, seeds, downsample, epochs, limit_train, limit_test, lr,
              circuit_lr, tune_trials, tune_epochs, tune_limit_train, tune_task, jobs, threads, device,
              data_dir, out, dry_run, executor, address) -> None:
    """Run a protocol's grid (resuming an interrupted one) and write table.md, results.json, plots."""
    if address and executor != "ray":
        raise QLAMError("--address is the Ray cluster of --executor ray: add --executor ray or "
                        "drop --address")
    overrides = {"models": name_list(models, MODELS, "--models"),
                 "tasks": name_list(tasks, BENCH_TASKS, "--tasks"),
                 "seeds": int_list(seeds, "--seeds", example="0,1,2"),
                 "downsample": int_list(downsample, "--downsample", 1, example="4,2,1"),
                 "epochs": epochs,
                 "limit_train": limit_train, "limit_test": limit_test, "lr": lr,
                 "circuit_lr": circuit_lr, "tune_trials": tune_trials,
                 "tune_epochs": tune_epochs, "tune_limit_train": tune_limit_train,
                 "tune_task": tune_task, "jobs": jobs,
                 "device": device}
    protocol = replace(PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None})
    out = Path(out) if out else Path("runs") / f"bench-{name}"
    if protocol.tune_trials and (lr or circuit_lr):
        raise QLAMError("--lr/--circuit-lr fix the learning rates that tuning searches: give "
                        "--tune-trials 0 with them, or drop them")
    check(protocol)
    saved = out / "protocol.json"
    defaults = asdict(Protocol(name))  # grids saved before a field existed ran with its default
    if saved.is_file() and results_settings({**defaults, **json.loads(saved.read_text())}) \
            != results_settings(asdict(protocol)):
        raise QLAMError(f"{out} holds a grid with other settings ({saved}); rerun with the same "
                        "options to resume it, or choose another --out")
    check_device(protocol.device)
    runner = RayExecutor(address) if executor == "ray" and not dry_run else \
        LocalExecutor(protocol.jobs)
    cells = plan(protocol)
    if not dry_run:
        for line in retire_stale(cells, protocol, out):
            click.echo(line)
    done = {c.name for c in cells if finished(c, out)}
    need = "1 GPU" if "num_gpus" in cell_resources(protocol, threads) else f"{threads} CPU(s)"
    how = (f"{protocol.jobs} at a time x {threads} thread(s)" if executor == "local" else
           f"Ray tasks on {address or 'a local instance'}, each with {need}")
    click.echo(f"qlam-qiskit bench: protocol {name}, {len(cells)} runs ({len(done)} finished), "
               f"{how} -> {out}")
    if dry_run:
        for c in studies(cells, protocol) if protocol.tune_trials else []:
            click.echo(f"[tune] {study_name(c, protocol)}: {protocol.tune_trials} trials searching "
                       f"{', '.join(searched(c.model))} ({protocol.tune_epochs} epoch(s), "
                       f"{protocol.tune_limit_train or 'all'} images) in {out / 'tune'}")
        for c in apply(cells, load_best(out) if protocol.tune_trials else {}, protocol):
            state = "done" if c.name in done else "todo"
            click.echo(f"[{state}] {c.name} (d_model {c.d_model}): " + " ".join(
                command(c, protocol, out / "runs" / c.name, data_dir=data_dir, threads=threads)[3:]))
        return
    save_json(asdict(protocol), saved)

    def tuned(study: str, best: dict) -> None:
        rates = ", ".join(f"{k} {best[k]:.2e}" for k in ("lr", "circuit_lr") if k in best)
        click.echo(f"tuned {study}: {best['trials']} trials, best val {best['val_accuracy']:.3f} "
                   f"at {rates}")
    try:  # tuning first (here, --jobs trials at a time), then the cells with what it found
        best = tune(cells, protocol, out, data_dir=data_dir, threads=threads, jobs=protocol.jobs,
                    on_study=tuned)
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; rerun the same command to resume ({out})") from None
    cells = apply(cells, best, protocol)
    bar = tqdm(total=len(cells), initial=len(done), desc="bench", unit="run", dynamic_ncols=True)
    failed: list[str] = []

    def on_done(cell, rc: int) -> None:
        bar.update(1)
        if rc:
            failed.append(cell.name)
            tqdm.write(f"{cell.name} failed (exit {rc}); see {out / 'runs' / cell.name / 'run.log'}")
        else:
            summarise(out, protocol)  # table grows as runs finish
    try:
        run_grid(protocol, out, cells=cells, data_dir=data_dir, threads=threads, on_done=on_done,
                 executor=runner)
    except KeyboardInterrupt:
        raise click.ClickException(f"interrupted; rerun the same command to resume ({out})") from None
    finally:
        bar.close()
    table, files = summarise(out, protocol)
    click.echo(table)
    click.echo("wrote " + ", ".join(str(f) for f in files))
    if failed:
        raise click.ClickException(f"{len(failed)} run(s) failed: {', '.join(failed)}; fix the "
                                   "cause in their run.log and rerun to resume")
