"""``qlam-qiskit bench``: planning, parameter matching, a tiny grid end to end, resume, report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from datafiles import make_mnist

from qlam_qiskit.bench import PROTOCOLS, plan
from qlam_qiskit.bench.grid import _num_params, command
from qlam_qiskit.cli.main import main


def test_cpu_protocol_matches_parameter_counts_within_ten_percent() -> None:
    p = PROTOCOLS["cpu"]
    cells = plan(p)
    assert len(cells) == len(p.tasks) * len(p.models) * len(p.seeds) * len(p.downsample)
    assert len({c.name for c in cells}) == len(cells)
    for task in p.tasks:
        width = {c.model: c.d_model for c in cells if c.task == task}
        target = _num_params("qlam", task, p.downsample[0], width["qlam"], p.gray)
        for model, d in width.items():
            n = _num_params(model, task, p.downsample[0], d, p.gray)
            assert abs(n - target) / target < 0.10, (task, model, n, target)


def test_command_resumes_from_a_checkpoint(tmp_path: Path) -> None:
    cell = plan(PROTOCOLS["cpu"])[0]
    fresh = command(cell, PROTOCOLS["cpu"], tmp_path, data_dir="d", threads=1)
    assert "--resume" not in fresh and fresh[fresh.index("--downsample") + 1] == "2"
    assert fresh[fresh.index("--d-model") + 1] == str(cell.d_model)
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    again = command(cell, PROTOCOLS["cpu"], tmp_path, data_dir="d", threads=1)
    assert again[-1] == "--resume" and "--task" not in again


def _bench(*args) -> object:
    return CliRunner().invoke(main, ["bench", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """A 2-model x 2-downsampling grid on a generated MNIST folder, one epoch each."""
    root = tmp_path_factory.mktemp("bench")
    make_mnist(root / "mnist")
    out = root / "grid"
    args = ["--tasks", "smnist", "--models", "qlam,gru", "--seeds", "0", "--downsample", "7,4",
            "--epochs", "1", "--limit-train", "27", "--limit-test", "10", "--jobs", "2",
            "--data-dir", root, "--out", out]
    res = _bench(*args)
    assert res.exit_code == 0, res.output
    return root, out, args


def test_grid_writes_table_json_and_plots(grid) -> None:
    _, out, _ = grid
    assert len(list((out / "runs").glob("*/result.json"))) == 4
    table = (out / "table.md").read_text()
    assert "smnist (T=16)" in table and "smnist (T=49)" in table and "| qlam |" in table
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {(r["model"], r["seq_len"]) for r in rows} == {(m, t) for m in ("qlam", "gru")
                                                          for t in (16, 49)}
    assert all(r["seeds"] == 1 and 0 <= r["test_acc"] <= 100 for r in rows)
    for png in ("learning_curves.png", "accuracy_vs_length.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_rerun_skips_finished_and_resumes_cut_short_runs(grid) -> None:
    _, out, args = grid
    done = out / "runs" / "smnist-d4-gru-s0"
    (done / "result.json").unlink()  # as if cut short after its last checkpoint
    kept = out / "runs" / "smnist-d4-qlam-s0" / "result.json"
    stamp = kept.stat().st_mtime_ns
    res = _bench(*args)
    assert res.exit_code == 0, res.output
    assert (done / "result.json").is_file() and kept.stat().st_mtime_ns == stamp
    assert (done / "run.log").read_text().count("qlam-qiskit run:") == 2  # resumed, not redone
    assert len((done / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_run_of_an_earlier_model_is_moved_aside_and_run_again(grid) -> None:
    """A finished cell whose parameter count is not the plan's (the preset or width changed
    since) leaves runs/ for stale/, and the grid runs it again; the table counts the new one."""
    _, out, args = grid
    res_path = out / "runs" / "smnist-d7-gru-s0" / "result.json"
    res = json.loads(res_path.read_text())
    planned = res["num_params"]
    res_path.write_text(json.dumps({**res, "num_params": planned + 1}))  # as if an older model
    again = _bench(*args)
    assert again.exit_code == 0, again.output
    assert "smnist-d7-gru-s0: its run has" in again.output and "runs again" in again.output
    stale = out / "stale" / f"smnist-d7-gru-s0-{planned + 1}p"
    assert json.loads((stale / "result.json").read_text())["num_params"] == planned + 1
    assert json.loads(res_path.read_text())["num_params"] == planned  # rerun, the plan's model
    assert all(r["params"] == planned for r in json.loads((out / "results.json").read_text())
               ["rows"] if (r["model"], r["seq_len"]) == ("gru", 16))


def test_seeds_are_averaged_with_their_spread(tmp_path: Path) -> None:
    from qlam_qiskit.bench.report import summarise
    for seed, acc in ((0, 0.5), (1, 0.7)):
        run = tmp_path / "runs" / f"smnist-d2-ssm-s{seed}"
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text(json.dumps({"val_acc": acc}) + "\n")
        (run / "result.json").write_text(json.dumps({
            "data": {"task": "smnist"}, "seq_len": 196, "model_kind": "ssm", "test_accuracy": acc,
            "val_accuracy": acc, "num_params": 100, "model_config": {"d_model": 8},
            "train_seconds": 1.0, "sample_steps_per_s": 10.0, "train_size": 9, "test_size": 9,
            "epochs": 1}))
    table, files = summarise(tmp_path, PROTOCOLS["cpu"])
    row = json.loads((tmp_path / "results.json").read_text())["rows"][0]
    assert row["test_acc"] == pytest.approx(60.0) and row["test_acc_std"] == pytest.approx(14.142, abs=1e-3)
    assert "60.0 ± 14.1 (2)" in table and len(files) == 3


def test_a_grid_resumes_at_any_jobs(grid) -> None:
    _, out, args = grid
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    res = _bench(*[a if a != "2" else "1" for a in args])  # --jobs 1: scheduling, not results
    assert res.exit_code == 0, res.output
    assert "(4 finished)" in res.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_snapshot_of_a_grid_resumes_elsewhere(grid, tmp_path: Path) -> None:
    """benchmarks/grid_snapshot.py copies what a resume needs (how a grid outlives a machine)."""
    _, out, args = grid
    script = Path(__file__).parents[2] / "benchmarks" / "grid_snapshot.py"
    cut = out / "runs" / "smnist-d7-gru-s0"
    (cut / "checkpoint.pt").write_bytes(b"kept")  # a run not finished keeps its checkpoint
    result = (cut / "result.json").read_bytes()
    (cut / "result.json").unlink()
    copy = tmp_path / "copy"
    try:
        done = subprocess.run([sys.executable, str(script), str(out), str(copy)],
                              capture_output=True, text=True)
    finally:
        (cut / "checkpoint.pt").unlink()
        (cut / "result.json").write_bytes(result)
    assert done.returncode == 0, done.stderr
    assert (copy / "runs" / cut.name / "checkpoint.pt").read_bytes() == b"kept"
    assert not list(copy.glob("runs/*/run.log")) and len(list(copy.glob("runs/*/result.json"))) == 3
    shutil.copyfile(cut / "result.json", copy / "runs" / cut.name / "result.json")
    again = subprocess.run([sys.executable, str(script), str(out), str(copy)], capture_output=True)
    assert again.returncode == 0 and not (copy / "runs" / cut.name / "checkpoint.pt").exists()
    res = _bench(*[a if a != out else copy for a in args])
    assert res.exit_code == 0 and "(4 finished)" in res.output, res.output
    assert (copy / "table.md").read_text() == (out / "table.md").read_text()
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "nowhere"), str(copy)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "usage" in bad.stderr and "Traceback" not in bad.stderr


def test_a_subset_grid_merges_into_the_full_one(grid, tmp_path: Path) -> None:
    """grid_snapshot.py --merge: a subset grid's runs join the full folder, a run there of an
    earlier model moves to stale/, the table is written again; other settings are refused."""
    root, out, args = grid
    script = Path(__file__).parents[2] / "benchmarks" / "grid_snapshot.py"
    full = tmp_path / "full"
    shutil.copytree(out, full)
    res_path = full / "runs" / "smnist-d4-qlam-s0" / "result.json"
    old = json.loads(res_path.read_text())
    res_path.write_text(json.dumps({**old, "num_params": old["num_params"] - 7}))
    sub = tmp_path / "sub"
    opts = {"--models": "gru", "--seeds": "1", "--downsample": "7", "--out": sub}
    res = _bench(*[opts.get(prev, a) for prev, a in zip([None] + args, args)])
    assert res.exit_code == 0, res.output
    foreign = sub / "runs" / "smnist-d7-qlam-s0"  # an earlier grid's run left in the subset's
    foreign.mkdir(parents=True)                   # folder: not the subset's, never merged
    (foreign / "result.json").write_text(json.dumps({**old, "test_accuracy": 0.01}))
    newer = (full / "runs" / "smnist-d7-qlam-s0" / "result.json").read_text()
    rerun = full / "runs" / "smnist-d7-gru-s1"  # an earlier model's run of a cell the subset
    rerun.mkdir()                                # ran again: kept in stale/, not overwritten
    (rerun / "result.json").write_text(json.dumps({**old, "num_params": 5}))
    done = subprocess.run([sys.executable, str(script), "--merge", str(sub), str(full)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "smnist-d4-qlam-s0: its run has" in done.stdout
    assert (full / "stale" / f"smnist-d4-qlam-s0-{old['num_params'] - 7}p").is_dir()
    assert (full / "runs" / "smnist-d7-gru-s1" / "result.json").is_file()
    assert (full / "runs" / "smnist-d7-qlam-s0" / "result.json").read_text() == newer
    assert (full / "stale" / "smnist-d7-gru-s1-5p" / "result.json").is_file()
    rows = {(r["model"], r["seq_len"]): r for r in
            json.loads((full / "results.json").read_text())["rows"]}
    assert rows[("gru", 16)]["seeds"] == 2 and ("qlam", 49) not in rows
    assert json.loads((full / "protocol.json").read_text()) == \
        json.loads((out / "protocol.json").read_text())  # the full grid's own, kept
    other = tmp_path / "other"
    shutil.copytree(sub, other)
    proto = json.loads((other / "protocol.json").read_text())
    (other / "protocol.json").write_text(json.dumps({**proto, "epochs": 3}))
    bad = subprocess.run([sys.executable, str(script), "--merge", str(other), str(full)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "other settings" in bad.stderr and "Traceback" not in bad.stderr


def test_other_settings_in_the_same_folder_are_refused(grid) -> None:
    _, out, args = grid
    res = _bench(*[a if a != "1" else "2" for a in args])  # --epochs 2
    assert res.exit_code != 0 and "other settings" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("bad", [["--models", "qlam,foo"], ["--seeds", "a"], ["--downsample", "0"]])
def test_bad_options_are_one_line(bad, tmp_path: Path) -> None:
    res = _bench(*bad, "--out", tmp_path / "g", "--dry-run")
    assert res.exit_code != 0 and "Traceback" not in res.output


def test_a_snapshot_copies_studies_through_sqlite(tmp_path: Path) -> None:
    import importlib.util
    import sqlite3
    spec = importlib.util.spec_from_file_location(
        "grid_snapshot", Path(__file__).parents[2] / "benchmarks" / "grid_snapshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "src" / "tune").mkdir(parents=True)
    (tmp_path / "src" / "protocol.json").write_text("{}")
    with sqlite3.connect(tmp_path / "src" / "tune" / "a.db") as db:
        db.execute("create table t (x)")
        db.executemany("insert into t values (?)", [(1,), (2,)])
    db.close()
    copied = mod.snapshot(tmp_path / "src", tmp_path / "dst")
    assert sorted(map(str, copied)) == ["protocol.json", "tune/a.db"]
    with sqlite3.connect(tmp_path / "dst" / "tune" / "a.db") as db:
        assert db.execute("select x from t order by x").fetchall() == [(1,), (2,)]
    db.close()
    assert not list((tmp_path / "dst").rglob("*.tmp"))


def test_snapshot_folders_are_not_git_ignored() -> None:
    """A snapshot's cells (runs/*/result.json) must be committable, or the grid is lost again."""
    root = Path(__file__).parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs git and a git checkout")
    probe = ["benchmarks/results/bench-full/runs/smnist-qlam-s0/result.json",
             "benchmarks/results/bench-full/runs/smnist-qlam-s0/checkpoint.pt"]
    out = subprocess.run(["git", "check-ignore", *probe], cwd=root, capture_output=True, text=True)
    assert out.stdout.strip() == "", f"git ignores snapshot files: {out.stdout}"
    out = subprocess.run(["git", "check-ignore", "runs/x/result.json"], cwd=root,
                         capture_output=True, text=True)
    assert out.stdout.strip() == "runs/x/result.json"  # scratch runs at the root stay ignored


def test_lengths_protocol_reuses_the_full_grids_cells_and_studies() -> None:
    """The T=784 cells of `lengths` are `full`'s (same names, commands and studies), so a full
    grid's finished runs can be copied in instead of rerun."""
    from dataclasses import replace as dc_replace

    from qlam_qiskit.bench.tune import study_name
    lengths, full = PROTOCOLS["lengths"], PROTOCOLS["full"]
    ours = {c.name: c for c in plan(lengths)}
    assert {c.downsample for c in ours.values()} == {4, 2, 1}
    theirs = {c.name: c for c in plan(full)}
    shared = [n for n, c in ours.items() if c.downsample == 1]
    assert len(shared) == len(lengths.models) and all(n in theirs for n in shared)
    for n in shared:
        assert ours[n] == theirs[n] and study_name(ours[n], lengths) == study_name(theirs[n], full)
        cmd = lambda p: command(dc_replace(ours[n], lr=1e-3, circuit_lr=1e-2), p, Path("r"),
                                data_dir="d", threads=1)
        assert cmd(lengths) == cmd(full)
    for field in ("epochs", "batch_size", "tune_trials", "tune_epochs", "tune_limit_train",
                  "tune_seed", "gray", "limit_train", "limit_test"):
        assert getattr(lengths, field) == getattr(full, field), field
