"""``bench --tune-trials``: every model's learning rates searched on validation with the same
budget, the cells trained with the best, the search resumed, the table saying what each got."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from datafiles import make_mnist

from qlam_qiskit.bench.protocol import PROTOCOLS
from qlam_qiskit.bench.tune import SPACE, STUDY
from qlam_qiskit.cli.main import main

TUNE = ["--tune-trials", "2", "--tune-epochs", "1", "--tune-limit-train", "18"]
COMPLETE = optuna.trial.TrialState.COMPLETE


def _bench(*args) -> object:
    return CliRunner().invoke(main, ["bench", *[str(a) for a in args]])


def _study(out: Path, model: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{out}/tune/smnist-d7-{model}.db")


def _result(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> dict:
    """qlam and lstm on one task, 2 trials each; lstm's study was cut short before the grid
    started: one trial complete, one left running by a killed process."""
    root = tmp_path_factory.mktemp("tune")
    make_mnist(root / "mnist")
    out = root / "grid"
    (out / "tune").mkdir(parents=True)
    pre = optuna.create_study(study_name=STUDY, direction="maximize",
                              storage=f"sqlite:///{out}/tune/smnist-d7-lstm.db")
    dist = {"lr": optuna.distributions.FloatDistribution(*SPACE["lr"], log=True)}
    pre.add_trial(optuna.trial.create_trial(params={"lr": 5e-4}, distributions=dist, value=0.0,
                                            user_attrs={"run": 0}))
    cut = pre.ask(dist)  # never told: what a process killed mid-trial leaves
    cut.set_user_attr("run", 1)
    args = ["--tasks", "smnist", "--models", "qlam,lstm", "--seeds", "0", "--downsample", "7",
            "--epochs", "1", "--limit-train", "27", "--limit-test", "10", "--jobs", "2",
            "--threads", "1", *TUNE, "--data-dir", root, "--out", out]
    res = _bench(*args)
    assert res.exit_code == 0, (res.output, res.exception)
    return {"out": out, "args": args, "output": res.output, "cut_lr": cut.params["lr"]}


def test_every_model_gets_the_same_trials_and_budget(grid) -> None:
    out = grid["out"]
    for model in ("qlam", "lstm"):
        assert len(_study(out, model).get_trials(states=(COMPLETE,))) == 2
    runs = sorted((out / "tune").glob("*/trial-*/result.json"))
    assert len(runs) == 3  # qlam's 2, and lstm's one missing trial (its first was kept)
    cell_width = {m: _result(out / "runs" / f"smnist-d7-{m}-s0")["model_config"]["d_model"]
                  for m in ("qlam", "lstm")}
    for r in map(json.loads, (p.read_text() for p in runs)):
        assert (r["epochs"], r["train_size"], r["train_config"]["seed"]) == (1, 18, 0)
        assert r["test_size"] == 1  # test is never what a trial is scored on
        assert r["model_config"]["d_model"] == cell_width[r["model_kind"]]


def test_a_cut_short_trial_is_rerun_with_its_learning_rate(grid) -> None:
    out = grid["out"]
    lstm = out / "tune" / "smnist-d7-lstm"
    assert sorted(p.name for p in lstm.iterdir()) == ["trial-1"]
    assert _result(lstm / "trial-1")["train_config"]["lr"] == grid["cut_lr"]
    states = [t.state for t in _study(out, "lstm").trials]
    assert states.count(COMPLETE) == 2 and states.count(optuna.trial.TrialState.FAIL) == 1


def test_cells_train_with_each_studys_best(grid) -> None:
    out = grid["out"]
    best = json.loads((out / "tune" / "best.json").read_text())
    assert set(best) == {"smnist-d7-qlam", "smnist-d7-lstm"}
    for model in ("qlam", "lstm"):
        study, b = _study(out, model), best[f"smnist-d7-{model}"]
        assert b["val_accuracy"] == study.best_value and b["trials"] == 2
        assert {k: b[k] for k in study.best_params} == study.best_params
        cfg = _result(out / "runs" / f"smnist-d7-{model}-s0")["train_config"]
        assert cfg["lr"] == b["lr"]
        if model == "qlam":
            assert cfg["circuit_lr"] == b["circuit_lr"]
    assert best["smnist-d7-qlam"]["lr"] != PROTOCOLS["cpu"].lr


def test_circuit_lr_is_searched_for_qlam_only(grid) -> None:
    out = grid["out"]
    for model, keys in (("qlam", {"lr", "circuit_lr"}), ("lstm", {"lr"})):
        for t in _study(out, model).get_trials(states=(COMPLETE,)):
            assert set(t.params) == keys
            assert all(SPACE[k][0] <= v <= SPACE[k][1] for k, v in t.params.items())
    best = json.loads((out / "tune" / "best.json").read_text())
    assert "circuit_lr" not in best["smnist-d7-lstm"] and "circuit_lr" in best["smnist-d7-qlam"]


def test_table_says_what_each_model_trained_with(grid) -> None:
    out = grid["out"]
    best = json.loads((out / "tune" / "best.json").read_text())
    table = (out / "table.md").read_text()
    assert "tuned on validation, the same budget for every model: 2 Optuna trials" in table
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    for model in ("qlam", "lstm"):
        b, row = best[f"smnist-d7-{model}"], rows[model]
        assert row["tuned"] and row["lr"] == b["lr"] and row["tune_trials"] == 2
        assert row["tune_val_acc"] == pytest.approx(100 * b["val_accuracy"])
        line = next(line for line in table.splitlines()
                    if line.startswith(f"| smnist | 16 | {model} |"))
        assert f"{b['lr']:.2e}" in line and "yes (" in line
    assert rows["lstm"]["circuit_lr"] is None and rows["qlam"]["circuit_lr"] == best[
        "smnist-d7-qlam"]["circuit_lr"]


def test_rerun_runs_no_new_trials_and_no_new_runs(grid) -> None:
    out = grid["out"]
    results = sorted(out.glob("**/result.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    trials = {m: len(_study(out, m).trials) for m in ("qlam", "lstm")}
    res = _bench(*grid["args"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "2 runs (2 finished)" in res.output
    assert sorted(out.glob("**/result.json")) == results
    assert [p.stat().st_mtime_ns for p in results] == stamps
    assert {m: len(_study(out, m).trials) for m in ("qlam", "lstm")} == trials


def test_other_tuning_settings_in_the_same_folder_are_refused(grid) -> None:
    args = grid["args"]
    i = args.index("--tune-trials")
    res = _bench(*args[:i + 1], "3", *args[i + 2:], "--dry-run")
    assert res.exit_code != 0 and "other settings" in res.output and "Traceback" not in res.output


def test_a_grid_saved_before_tuning_existed_resumes(tmp_path: Path) -> None:
    saved = {k: v for k, v in asdict(PROTOCOLS["cpu"]).items() if not k.startswith("tune_")}
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "protocol.json").write_text(json.dumps(saved))
    assert _bench("--out", tmp_path / "g", "--dry-run").exit_code == 0
    res = _bench("--out", tmp_path / "g", "--dry-run", "--tune-trials", "2")
    assert res.exit_code != 0 and "other settings" in res.output


def test_dry_run_lists_the_studies(tmp_path: Path) -> None:
    res = _bench("--models", "qlam,gru", "--tasks", "smnist", *TUNE, "--out", tmp_path / "g",
                 "--dry-run")
    assert res.exit_code == 0, res.output
    assert "[tune] smnist-d2-qlam: 2 trials searching lr, circuit_lr" in res.output
    assert "[tune] smnist-d2-gru: 2 trials searching lr (" in res.output


@pytest.mark.parametrize("bad, says", [
    (["--tune-trials", "-1"], "--tune-trials"),
    (["--tune-epochs", "0"], "--tune-epochs"),
    (["--tune-trials", "2", "--lr", "1e-3"], "--tune-trials 0"),
])
def test_bad_tuning_options_are_one_line(bad, says, tmp_path: Path) -> None:
    res = _bench(*bad, "--out", tmp_path / "g", "--dry-run")
    assert res.exit_code != 0 and says in res.output and "Traceback" not in res.output
    assert not (tmp_path / "g").exists()


def test_optuna_missing_is_one_line(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    res = _bench("--tasks", "smnist", "--models", "gru", "--tune-trials", "2", "--out",
                 tmp_path / "g")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert 'pip install "qlam-qiskit[tune]"' in res.output and "--tune-trials 0" in res.output
    assert not (tmp_path / "g").exists()
    res = _bench("--tasks", "smnist", "--models", "gru", "--out", tmp_path / "g", "--dry-run")
    assert res.exit_code == 0  # no tuning, no Optuna needed


def test_one_tuning_task_sets_every_tasks_rates(tmp_path: Path) -> None:
    """--tune-task: studies on that task only; the other tasks' cells train with its best, and
    the table marks them tuned."""
    make_mnist(tmp_path / "mnist")
    make_mnist(tmp_path / "fashion-mnist", seed=2)
    out = tmp_path / "g"
    res = _bench("--tasks", "smnist,sfmnist", "--models", "lstm", "--seeds", "0", "--downsample",
                 "7", "--epochs", "1", "--limit-train", "27", "--limit-test", "10", *TUNE,
                 "--tune-task", "smnist", "--data-dir", tmp_path, "--out", out)
    assert res.exit_code == 0, (res.output, res.exception)
    best = json.loads((out / "tune" / "best.json").read_text())
    assert set(best) == {"smnist-d7-lstm"}
    assert sorted(p.name for p in (out / "tune").glob("*.db")) == ["smnist-d7-lstm.db"]
    for task in ("smnist", "sfmnist"):
        assert _result(out / "runs" / f"{task}-d7-lstm-s0")["train_config"]["lr"] == \
            best["smnist-d7-lstm"]["lr"]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["task"]: r["tuned"] for r in rows} == {"smnist": True, "sfmnist": True}
    assert "on smnist only" in (out / "table.md").read_text()


def test_a_tuning_task_outside_the_grid_is_refused(tmp_path: Path) -> None:
    res = _bench("--tasks", "sfmnist", *TUNE, "--tune-task", "smnist", "--out", tmp_path / "g",
                 "--dry-run")
    assert res.exit_code != 0 and "--tune-task smnist" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "g").exists()
