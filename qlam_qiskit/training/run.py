"""A training run as the CLI starts it: presets merged with options, or a checkpoint resumed,
the backend checked, the model built, then trained on the exact engine or on primitives.

``plan_run`` and ``resume_run`` turn options into a ``RunPlan`` (all checks of the options and of
the checkpoint happen there, before any data is loaded or any file is written); ``execute``
loads and checks the data, takes the run folder's lock (one live run per folder), checks that
the folder is writable and its disk has room, and trains.

Resume rules: a resumed run keeps every setting its checkpoint holds; only the epochs (to train
on: never fewer than already trained), the device and the data folder may change, and its backend
is the one it was trained on. A finished run (result.json written, every epoch trained) has
nothing to resume.

Under torchrun (WORLD_SIZE above 1) every process plans the same run, then ``execute`` joins
the process group: rank 0 alone takes the folder (lock, checks, header) and writes the files;
every rank trains its share of each batch (``training.distributed``, ``loop.train``). Primitives
backends train in one process.
"""

from __future__ import annotations

import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Callable

from ..backends import resolve_backend
from ..circuits.cell import CellTemplate
from ..data import DataSpec
from ..errors import CheckpointError, QLAMError
from ..io import CHECKPOINT, RUN_FILES, RunLock, load_checkpoint, remove_stale_temps
from ..models import ModelConfig, QLAMClassifier
from ..models.baselines import BASELINES, BaselineClassifier
from .distributed import Group, process_group, world_size
from .loop import TrainConfig, check_device, check_run_space, seed_everything, train
from .plan import PrimitiveOptions, RunPlan, cell_record, stored_cell, stored_configs
from .presets import preset, with_options
from .primitives import train_primitives

MODEL_KINDS = ("qlam",) + BASELINES
"""``--model`` choices: QLAM or a classical baseline in the same frame."""


def default_out(task: str) -> Path:
    """A new run folder under ./runs/ named after the task and the time."""
    return Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"


CELL_FIELDS = ("qubits", "depth", "entanglement", "entangler", "encoding")
"""ModelConfig fields that shape the QLAM cell: a user's own cell circuit replaces them."""


def plan_run(*, spec: DataSpec, backend: str, kind: str = "qlam", model: dict | None = None,
             train: dict | None = None, position: bool | None = None, seed: int = 0,
             device: str = "cpu", out: str | Path | None = None,
             primitives: PrimitiveOptions = PrimitiveOptions(),
             cell: CellTemplate | None = None) -> RunPlan:
    """A new run: the task preset, overridden by the options given (None means "not given");
    ``cell``, a user's own cell circuit, replaces the QLAM cell in every layer."""
    model = {k: v for k, v in (model or {}).items() if v is not None}
    if cell is not None:
        clash = [f"--{k.replace('_', '-')}" for k in CELL_FIELDS if k in model]
        if clash or kind != "qlam":
            raise QLAMError(f"--cell brings its own circuit: drop {', '.join(clash) or '--model ' + kind}")
        model.update(cell="custom", qubits=cell.num_qubits)
    train = {k: v for k, v in (train or {}).items() if v is not None}
    unknown = set(model) - {f.name for f in fields(ModelConfig)}
    if unknown:
        raise QLAMError(f"unknown model option(s) {', '.join(sorted(unknown))}")
    if kind not in MODEL_KINDS:
        raise QLAMError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    check_device(device)
    b = resolve_backend(backend, seed=seed)
    if b.exact and primitives.given():
        raise QLAMError(f"{'/'.join(primitives.given())} apply to primitives backends (aer, "
                        "fake_<device>, ...); drop them or choose such a --backend")
    p = preset(spec.task, spec.downsample, kind if b.exact else "primitives")
    mcfg = ModelConfig(**with_options(p["model"], model))
    tcfg = TrainConfig(**{**p["train"], **train, "seed": seed, "device": device})
    out = Path(out) if out else default_out(spec.task)
    if (out / CHECKPOINT).exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or "
                              "choose another --out")
    plan = RunPlan(spec, kind, mcfg, tcfg, b, out, p["position"] if position is None else position,
                   primitives, cell=cell)
    if not b.exact:
        b.require()  # GPU / account / network problems before anything else
        _hardware_shape(plan, model)
    elif mcfg.entanglement == "coupling":
        raise QLAMError("--entanglement coupling follows a device's coupling map: use --backend "
                        "fake_<device> or ibm_<device>")
    return plan


def _hardware_shape(plan: RunPlan, given: dict) -> None:
    """Primitives backends train the hardware-compatible QLAM (one memory, pure or damped, read at
    the end); an ``entanglement`` of "coupling" becomes a ring or path of natively coupled device
    qubits."""
    if plan.kind != "qlam":
        raise QLAMError(f"--model {plan.kind} has no circuit; primitives backends run QLAM")
    bad = [f"--{k} {given[k]}" for k in ("layers", "heads") if given.get(k) not in (None, 1)]
    if bad or given.get("pool") == "mean":
        raise QLAMError(f"{' '.join(bad) or '--pool mean'}: primitives backends train the "
                        "hardware-compatible QLAM (--layers 1 --heads 1 --pool last); drop the option")
    m = plan.model
    m.layers, m.heads, m.pool = 1, 1, "last"
    if m.entanglement == "coupling":
        if m.memory == "damped":  # the chain places n qubits; the damped circuit has 2n
            raise QLAMError("--entanglement coupling lays out the memory's qubits but not a damped "
                            "memory's reset ancillas: drop it (the transpiler places all 2n "
                            "qubits) or use --memory pure")
        layout, ring = plan.backend.coupling_chain(m.qubits)
        m.entanglement = "ring" if ring else "linear"
        plan.primitives = replace(plan.primitives, layout=layout,
                                  transpile=replace(plan.primitives.transpile,
                                                    initial_layout=layout))


RESUME_KEYS = ("optimizer", "scheduler", "rng", "metrics", "train_seconds")
"""What a checkpoint needs beyond load_checkpoint's keys to be resumed."""


def resume_run(out: str | Path, *, backend: str | None = None, device: str = "cpu",
               epochs: int | None = None, data_dir: str | None = None) -> RunPlan:
    """Continue the run in ``out`` with the settings it was started with (``epochs`` may grow)."""
    ckpt = Path(out) / CHECKPOINT
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} not found: nothing to resume; drop --resume")
    check_device(device)
    state = load_checkpoint(ckpt)
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{ckpt} cannot be resumed: it has no {', '.join(missing)}; "
                              "rerun without --resume into a new --out")
    saved = state.get("backend", "statevector")
    if backend is not None and backend != saved:
        raise QLAMError(f"{out} was trained on {saved}: resume with --backend {saved} or drop "
                        "--backend")
    mcfg, tcfg = stored_configs(state, ckpt)
    done = state["epoch"]
    if epochs is not None and epochs < done:
        raise QLAMError(f"--epochs {epochs} is below the {done} epochs {out} has already "
                        f"trained; give --epochs {done} or more, or drop --epochs")
    if done >= (epochs or tcfg.epochs) and (Path(out) / "result.json").is_file():
        raise QLAMError(f"{out} is already complete ({done} epochs, result.json written); "
                        f"pass --epochs N above {done} with --resume to train on")
    b = resolve_backend(saved, seed=tcfg.seed)
    tcfg.device = device
    if epochs:
        tcfg.epochs = epochs
    prim = PrimitiveOptions() if b.exact else PrimitiveOptions.from_record(state)
    if not b.exact:
        b.require()
    return RunPlan(DataSpec.from_record(state["data"], data_dir=data_dir),
                   state.get("model_kind", "qlam"), mcfg, tcfg, b, Path(out), mcfg.max_len > 0,
                   prim, state, stored_cell(state))


def build_model(kind: str, cfg: ModelConfig, cell: CellTemplate | None = None) -> Any:
    """The classifier a run trains: QLAM (with the user's own cell, if any) or a baseline."""
    return QLAMClassifier(cfg, cell=cell) if kind == "qlam" else BaselineClassifier(kind, cfg)


def execute(plan: RunPlan, *, progress: bool = True,
            echo: Callable[[str], None] = print) -> dict:
    """Load the data, take the run folder (lock, space), build the model, print the header
    line, train; returns result.json's dict. A run that saved nothing leaves no folder behind.
    Under torchrun, every rank trains and rank 0 alone holds the folder and writes to it."""
    if world_size() > 1 and not plan.backend.exact:
        raise QLAMError(f"--backend {plan.backend.name} trains through Estimator primitives in "
                        "one process: run it without torchrun (or --nproc-per-node 1)")
    with process_group(plan.train.device) as group:
        if group.world > 1:
            plan.train.device = group.device  # cpu, or this rank's cuda:LOCAL_RANK
        data = group.each(lambda: plan.spec.load(plan.train.seed))  # checked before any write
        lock = group.on_main(lambda: _take_folder(plan))
        try:
            if not plan.backend.exact:
                return train_primitives(plan, data, progress=progress, echo=echo)
            return _train_exact(plan, data, group, progress=progress, echo=echo)
        finally:
            if lock is not None:
                _leave_folder(plan, lock)


def _take_folder(plan: RunPlan) -> RunLock:
    """The run folder's lock (also the check that it is writable), no stale temporary files,
    and the folder still as planned."""
    lock = RunLock(plan.out).acquire()
    try:
        remove_stale_temps(plan.out, RUN_FILES, any_writer=True)  # no writer but us now
        _check_folder(plan)
    except BaseException:
        _leave_folder(plan, lock)
        raise
    return lock


def _leave_folder(plan: RunPlan, lock: RunLock) -> None:
    """Release the lock; a folder this run created and saved nothing in is removed."""
    lock.release()
    try:
        if lock.created and not any(plan.out.iterdir()):
            plan.out.rmdir()  # nothing was saved: no empty folder either
    except OSError:
        pass


def _check_folder(plan: RunPlan) -> None:
    """Under the lock: the folder is still as planned (no run finished there meanwhile)."""
    ckpt = plan.out / CHECKPOINT
    if not plan.resume and ckpt.exists():
        raise QLAMError(f"{plan.out} already holds a run; pass --resume to continue it or "
                        "choose another --out")
    if plan.resume and load_checkpoint(ckpt)["epoch"] != plan.state["epoch"]:
        raise QLAMError(f"{plan.out} changed while this run was starting (another run saved an "
                        "epoch); run the command again")


def _train_exact(plan: RunPlan, data: Any, group: Group, *, progress: bool,
                 echo: Callable[[str], None]) -> dict:
    mcfg = plan.model
    mcfg.d_input, mcfg.num_classes = data.channels, data.num_classes
    if not plan.resume:
        mcfg.max_len = data.seq_len if plan.position else 0
    seed_everything(plan.train.seed)
    model = build_model(plan.kind, mcfg, plan.cell)
    n_params = sum(p.numel() for p in model.parameters())
    import torch

    ranks = f" x {group.world} processes" if group.world > 1 else ""
    c = model.config  # a custom cell sets its qubits
    shape = (f"{c.layers} layer(s) x {c.heads} {c.memory} memories x {c.qubits} qubits"
             if plan.kind == "qlam" else f"{c.layers} layer(s), d_model {c.d_model}")
    group.on_main(lambda: (check_run_space(plan.out, model), echo(
        f"qlam-qiskit run: task {plan.spec.task} ({len(data.x_train)} train / {len(data.x_val)} "
        f"val / {len(data.x_test)} test, T={data.seq_len}, C={data.channels}), backend "
        f"{plan.backend.name}, model {plan.kind}: {shape}, {n_params:,} parameters, "
        f"{plan.train.epochs} epochs, device "
        f"{plan.train.device}, {torch.get_num_threads()} thread(s){ranks} -> {plan.out}")))
    meta = {"model": plan.kind, "model_kind": plan.kind, "backend": plan.backend.name,
            "model_config": asdict(model.config), "data": plan.spec.record(data),
            **cell_record(plan.cell)}
    return train(model, data, plan.train, plan.out, meta=meta,
                 resume=plan.state if plan.resume else False, progress=progress, group=group)
