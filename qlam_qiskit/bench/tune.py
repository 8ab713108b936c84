"""Equal tuning: per (task, downsampling, model) one Optuna study of the learning rates, with the
same budget for every model, scored on validation; the grid's cells then train with each study's
best (``apply``).

Every trial is an ordinary ``qlam-qiskit run`` (``grid.command``, the cells' own path) in
``<out>/tune/<task>-d<k>-<model>/trial-<n>/``: the model's grid width, ``tune_limit_train``
training images, ``tune_epochs`` epochs, seed ``tune_seed``, scored by result.json's
``val_accuracy`` (the validation split carved from training data). Test is never scored; each run
still ends with a test pass, so tuning runs evaluate one test image. Trials run here (not on Ray),
``jobs`` at a time. Each study lives in ``<out>/tune/<task>-d<k>-<model>.db`` (sqlite), so a
rerun resumes it: completed trials are kept, and a trial cut short is run again with the same
learning rates in the same folder, from its checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import QLAMError
from ..io import save_json
from .grid import Cell, allow_runs, interruptible, run_in
from .protocol import Protocol

SPACE: dict[str, tuple[float, float]] = {"lr": (3e-4, 1e-2), "circuit_lr": (1e-3, 5e-2)}
"""Log-uniform search ranges: ``lr`` for every model, ``circuit_lr`` for qlam only."""
OPTUNA_INSTALL = 'pip install "qlam-qiskit[tune]"'
"""How to get Optuna (the optional extra)."""
STUDY = "lr"
"""Study name inside each sqlite file (one study per file)."""


def _optuna() -> Any:
    """The optuna module, quiet; missing is one line naming the fix."""
    try:
        import optuna
    except ImportError:
        raise QLAMError(f"tuning (--tune-trials) needs Optuna: {OPTUNA_INSTALL} (or give "
                        "--tune-trials 0 for the protocol's fixed learning rates)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def check(protocol: Protocol) -> None:
    """Refuse tuning settings that cannot run, in one line, before anything is written."""
    p = protocol
    if p.tune_trials < 0 or p.tune_epochs < 1 or (p.tune_limit_train or 2) < 2:
        raise QLAMError(f"tuning budget: --tune-trials {p.tune_trials} (0 or more), --tune-epochs "
                        f"{p.tune_epochs} (1 or more), --tune-limit-train {p.tune_limit_train} "
                        "(2 or more); fix the one out of range")
    if p.tune_trials and p.tune_task is not None and p.tune_task not in p.tasks:
        raise QLAMError(f"--tune-task {p.tune_task} is not among the grid's tasks "
                        f"({','.join(p.tasks)}): add it to --tasks or choose one of them")
    if p.tune_trials:
        _optuna()


def searched(model: str) -> tuple[str, ...]:
    """The learning rates a study searches: circuit angles only exist in qlam."""
    return ("lr", "circuit_lr") if model == "qlam" else ("lr",)


def study_key(task: str, downsample: int, model: str, protocol: Protocol | None = None) -> str:
    """The study that sets the rates of ``model`` on ``task``: the protocol's ``tune_task``'s
    where it tunes on one task only."""
    if protocol is not None and protocol.tune_task:
        task = protocol.tune_task
    return f"{task}-d{downsample}-{model}"


def study_name(cell: Cell, protocol: Protocol | None = None) -> str:
    """A cell's study: the cell's name without its seed (one study serves every seed)."""
    return study_key(cell.task, cell.downsample, cell.model, protocol)


def studies(cells: list[Cell], protocol: Protocol) -> list[Cell]:
    """One tuning cell per (task, downsampling, model) of the grid, with the tuning seed; only
    the ``tune_task``'s cells where the protocol tunes on one task."""
    seen: dict[str, Cell] = {}
    for c in cells:
        if protocol.tune_task in (None, c.task):
            seen.setdefault(study_name(c), replace(c, seed=protocol.tune_seed))
    return list(seen.values())


def _retry_cut_short(optuna: Any, study: Any, storage: Any, room: int) -> None:
    """Run again, in their own folders, trials a killed or failed process left unfinished
    (at most ``room``). Only one bench runs a grid, so a RUNNING trial here is a dead one."""
    trials = study.get_trials(deepcopy=False)
    state = optuna.trial.TrialState
    by_run: dict[int, list[Any]] = {}
    for t in trials:
        by_run.setdefault(t.user_attrs.get("run", t.number), []).append(t)
        if t.state == state.RUNNING:
            storage.set_trial_state_values(t._trial_id, state=state.FAIL)
    for run, ts in sorted(by_run.items()):
        last = ts[-1]
        settled = any(t.state in (state.COMPLETE, state.WAITING) for t in ts)
        if room > 0 and not settled and last.params:
            study.enqueue_trial(last.params, user_attrs={"run": run})
            room -= 1


def tune_study(cell: Cell, protocol: Protocol, out: Path, *, data_dir: str | None, threads: int,
               jobs: int = 1) -> dict[str, Any]:
    """Run (or resume) ``cell``'s study up to ``protocol.tune_trials`` completed trials; return
    its best learning rates, best validation accuracy and number of completed trials."""
    optuna = _optuna()
    name = study_name(cell)
    folder = out / "tune" / name
    folder.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder.with_suffix('.db').absolute()}")
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize",
                                load_if_exists=True)
    complete = optuna.trial.TrialState.COMPLETE
    need = protocol.tune_trials - len(study.get_trials(deepcopy=False, states=(complete,)))
    if need > 0:
        _retry_cut_short(optuna, study, storage, need)
        # seeded by the trials so far, so a resumed study does not redraw the first trials' rates
        sampler = optuna.samplers.TPESampler(seed=protocol.tune_seed + len(study.trials),
                                             n_startup_trials=max(1, protocol.tune_trials // 2))
        study = optuna.load_study(study_name=STUDY, storage=storage, sampler=sampler)
        trial_protocol = replace(protocol, epochs=protocol.tune_epochs,
                                 limit_train=protocol.tune_limit_train, limit_test=1)

        def objective(trial: Any) -> float:
            run = trial.user_attrs.get("run", trial.number)
            trial.set_user_attr("run", run)
            lrs = {k: trial.suggest_float(k, *SPACE[k], log=True) for k in searched(cell.model)}
            run_dir = folder / f"trial-{run}"
            result = run_dir / "result.json"
            if not result.is_file():  # else it finished before the process that ran it died
                rc = run_in(replace(cell, **lrs), trial_protocol, run_dir, data_dir, threads)
                if rc or not result.is_file():
                    raise QLAMError(f"tuning run {run_dir} failed (exit {rc}); see "
                                    f"{run_dir / 'run.log'}, fix the cause and rerun to resume")
            return float(json.loads(result.read_text())["val_accuracy"])

        allow_runs()  # Ctrl-C, SIGTERM: no more trials, the running ones stopped at once
        interruptible(lambda: study.optimize(objective, n_trials=need, n_jobs=max(1, jobs)))
    best = study.best_trial
    return {**best.params, "val_accuracy": best.value,
            "trials": len(study.get_trials(deepcopy=False, states=(complete,))),
            "trial": best.user_attrs.get("run", best.number)}


def best_path(out: Path) -> Path:
    """Where the grid's tuned learning rates are written."""
    return out / "tune" / "best.json"


def load_best(out: Path) -> dict[str, dict[str, Any]]:
    """best.json of grid folder ``out`` ({} before any study finished)."""
    path = best_path(out)
    return json.loads(path.read_text()) if path.is_file() else {}


def tune(cells: list[Cell], protocol: Protocol, out: Path, *, data_dir: str | None = None,
         threads: int = 1, jobs: int = 1, on_study: Any = None) -> dict[str, dict[str, Any]]:
    """Run or resume every study the grid's cells need, writing best.json after each; return it.
    ``on_study(name, best)`` is called as each study is done."""
    if protocol.tune_trials <= 0:
        return {}
    best = load_best(out)
    for c in studies(cells, protocol):
        best[study_name(c)] = tune_study(c, protocol, out, data_dir=data_dir, threads=threads,
                                         jobs=jobs)
        save_json(best, best_path(out))
        if on_study:
            on_study(study_name(c), best[study_name(c)])
    return best


def apply(cells: list[Cell], best: dict[str, dict[str, Any]],
          protocol: Protocol | None = None) -> list[Cell]:
    """The cells with their study's best learning rates (cells without a study unchanged)."""
    return [replace(c, **{k: best[study_name(c, protocol)][k] for k in searched(c.model)})
            if study_name(c, protocol) in best else c for c in cells]
