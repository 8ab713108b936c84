"""benchmarks/model_throughput.py's own handling of its output file (its figures are measured,
not tested): a bad --out is refused before any point runs, and a good one is written whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "model_throughput.py"


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_an_out_path_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    res = _run("--seq", "196", "--models", "frame", "--out", tmp_path / "file" / "rows.json")
    assert res.returncode == 1 and "round" not in res.stdout
    assert res.stderr.strip().startswith("error: cannot write --out") and "\n" not in \
        res.stderr.strip() and "Traceback" not in res.stderr


def test_rows_are_written_into_a_folder_made_for_them(tmp_path: Path) -> None:
    out = tmp_path / "new" / "rows.json"
    res = _run("--seq", "196", "--models", "frame", "--batch", "2", "--steps", "1",
               "--repeats", "1", "--threads", "1", "--out", out)
    assert res.returncode == 0, res.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["T"]) for r in rows] == [("frame", 196)]
    assert rows[0]["seconds"] > 0
    assert [p.name for p in out.parent.iterdir()] == ["rows.json"]  # no temporary file left
