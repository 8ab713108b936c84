"""The scripts in examples/ run as a newcomer would run them (tiny sizes) and print real results."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOAT = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"


def run_example(name: str, tmp_path: Path) -> str:
    """Run examples/<name> --tiny in a fresh interpreter; its stdout (fails with its stderr)."""
    env = {**os.environ, "QLAM_CACHE_DIR": str(tmp_path / "isa"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--tiny"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def one(pattern: str, out: str) -> float:
    """The number captured by ``pattern`` in the output (exactly one match)."""
    found = re.findall(pattern, out, flags=re.MULTILINE)
    assert len(found) == 1, f"expected one line matching {pattern!r} in:\n{out}"
    return float(found[0])


def check_torch_loop(out: str) -> None:
    losses = [float(v) for _, v in re.findall(r"^epoch (\d+) loss " + FLOAT + "$", out, re.M)]
    assert len(losses) == 3, out
    assert losses[-1] < losses[0] - 0.01, losses  # the QLAM model learns
    assert 0.0 <= one(r"^test accuracy " + FLOAT, out) <= 1.0
    assert one(r"qlam_layer_ref\(layer, x\)\| = " + FLOAT + "$", out) < 1e-4  # complex64 engine


def check_library_cell(out: str) -> None:
    assert "cell: 3 qubits, 3 inputs, 12 weights" in out
    exact = one(r"^exact engine accuracy " + FLOAT, out)
    aer = one(r"^Aer Estimator accuracy " + FLOAT, out)
    assert 0.0 <= exact <= 1.0 and aer == exact
    assert one(r"^max \|logit difference\| = " + FLOAT + "$", out) < 1e-6  # float64 on both sides


def check_transpile_report(out: str) -> None:
    rows = re.findall(r"^(\S+) (ring|coupling): " + FLOAT + " 2q gates/token, " + FLOAT
                      + " SWAPs/token", out, re.M)
    cost = {(b.split("[")[0], e): (float(q), float(s)) for b, e, q, s in rows}
    assert set(cost) == {(b, e) for b in ("fake_fez", "generic") for e in ("ring", "coupling")}, out
    assert cost["fake_fez", "coupling"][0] < cost["fake_fez", "ring"][0]  # no routing overhead
    assert cost["fake_fez", "ring"][1] > 0  # heavy-hex has no 6-cycle: SWAPs every token
    assert cost["fake_fez", "coupling"][1] == cost["generic", "coupling"][1] == 0
    assert cost["generic", "ring"] == cost["generic", "coupling"] == (12.0, 0.0)  # a native ring
    assert out.count("# QLAM circuit cost report") == 1
    assert re.search(r"^\| fake_fez \| 1 \| coupling \| 64 \| fit \|", out, re.M), out


CHECKS = {"torch_loop.py": check_torch_loop, "library_cell.py": check_library_cell,
          "transpile_report.py": check_transpile_report}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_runs_and_prints_results(name, tmp_path):
    CHECKS[name](run_example(name, tmp_path))


def test_every_example_is_tested():
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(CHECKS)
