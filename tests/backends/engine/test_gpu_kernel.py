"""The fused GPU kernel (numba-cuda, ``backends/engine/gpu``) held to the plain-autograd references.

On CPU (CI) the kernels run in numba's CUDA simulator in a subprocess: the simulator must be
switched on (NUMBA_ENABLE_CUDASIM=1) before numba is imported, and this process imports numba for
the CPU kernel, so the rest of the suite is unaffected. Where torch and numba-cuda see a GPU the
same cases also run on it in this process. ``benchmarks/gpu_check.py --simulate`` is run too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qlam_qiskit.backends.engine import gpu
from qlam_qiskit.backends.engine.gpu.cases import CASES, run_case
from qlam_qiskit.errors import EngineError

ROOT = Path(__file__).resolve().parents[3]
EXTRA = ("saved-memory-per-token", "engine-glue")


def _simulated_env() -> dict:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> dict:
    """Every case run once in the simulator (one subprocess, ~40 s): {name: row}."""
    out = tmp_path_factory.mktemp("gpu") / "rows.json"
    proc = subprocess.run([sys.executable, "-m", "qlam_qiskit.backends.engine.gpu.cases",
                           "--device", "cpu", "--json", str(out)], env=_simulated_env(),
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.exists(), proc.stdout + proc.stderr
    return {row["name"]: row for row in json.loads(out.read_text())}


@pytest.mark.parametrize("name", [c.name for c in CASES] + list(EXTRA))
def test_simulated_kernel_matches_reference(simulated, name):
    """Values and every gradient (ψ0, θ, offsets, U, e; α and R for the readout) within 1e-10
    (complex128) or 1e-5 (complex64); last-state and readout runs save nothing per token of
    state size; the KERNELS scan function equals the engine's product kernel."""
    row = simulated[name]
    assert row["ok"], f"{name}: error {row['error']:.2e} >= tol {row['tol']:.0e}"


@pytest.mark.skipif(not gpu.available("cuda"), reason="needs a CUDA GPU and numba-cuda")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cuda_kernel_matches_reference(case):
    row = run_case(case, torch.device("cuda"))
    assert row["ok"], f"{case.name}: error {row['error']:.2e} >= tol {row['tol']:.0e}"


def test_gpu_check_simulate_passes():
    """The prepared GPU check in its CPU mode: every line PASS or SKIP, exit status 0."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"),
                           "--simulate"], env=_simulated_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.split(" ", 1)[0] in
             ("PASS", "FAIL", "SKIP")]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert lines and not [ln for ln in lines if ln.startswith("FAIL")], proc.stdout
    names = {ln.split(" ", 1)[1].split(":")[0] for ln in lines}
    for check in ("cases/read-n3-anchors", "table n=3 T=8", "model equality",
                  "model B=2 fused-gpu+read", "aer_gpu refusal", "aer end to end"):
        assert check in names, proc.stdout


def test_refused_off_gpu_with_one_line():
    """Without the simulator, CPU tensors are refused naming the device; shapes are checked."""
    if gpu.simulating():
        pytest.skip("this process runs numba's CUDA simulator")
    assert gpu.problem("cpu") == "the fused GPU kernel runs on CUDA tensors, not cpu"
    psi = torch.zeros(1, 1, 4, dtype=torch.complex64)
    with pytest.raises(EngineError, match="fused-gpu: the fused GPU kernel runs on CUDA"):
        gpu.gpu_product_scan(psi, torch.zeros(1, 1, 1, 2), torch.eye(2), torch.zeros(1, 2),
                             torch.tensor([0, 1]), torch.zeros(2, 2),
                             torch.eye(2).expand(1, 1, 2, 2, 2), torch.ones(1, 1, 4))


def test_launch_shape_heuristic_and_overrides(monkeypatch):
    assert gpu.launch_shape(3, 16, 32) == (4, 32)  # a pair per thread; 128 threads a block
    assert gpu.launch_shape(10, 1, 8) == (128, 1)  # 512 pairs: 4 per thread
    assert gpu.launch_shape(1, 2, 3) == (1, 2)
    monkeypatch.setattr(gpu, "_sm_count", lambda device: 132)  # an H100/H200: spread the
    assert gpu.launch_shape(3, 16, 64) == (4, 2)  # 1024 samples over ~2 blocks per SM
    assert gpu.launch_shape(6, 4, 64, threads_per_sample=8, samples_per_block=4) == (8, 4)
    with pytest.raises(EngineError, match="threads_per_sample must be a power of two"):
        gpu.launch_shape(3, 1, 1, threads_per_sample=3)
    with pytest.raises(EngineError, match="threads_per_sample must be a power of two"):
        gpu.launch_shape(3, 1, 1, threads_per_sample=8)  # more threads than pairs
    with pytest.raises(EngineError, match="samples_per_block"):
        gpu.launch_shape(10, 1, 8, samples_per_block=16)  # 16 × 128 threads > 1024
