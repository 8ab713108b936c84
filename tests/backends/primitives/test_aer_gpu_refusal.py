"""aer_gpu refuses in one line naming the CUDA mismatch: the machines it meets, simulated offline.

qiskit-aer-gpu 0.18 wheels are built for CUDA 12 (qiskit-aer-gpu-cu11 for CUDA 11, no CUDA 13
build): the checks below stand in the installed build, the driver's CUDA version, the runtimes
found and Aer's import, as a CUDA 13 machine without the CUDA 12 wheels, an old driver, and so on.
"""

from __future__ import annotations

import pytest

from qlam_qiskit.backends.primitives import devices
from qlam_qiskit.backends.registry import resolve_backend
from qlam_qiskit.errors import BackendError


class _FakeSimulator:
    """AerSimulator of a GPU build; ``fail`` makes the test circuit raise."""

    fail: str | None = None

    def __init__(self, **options) -> None:
        self.options = options

    def available_devices(self):
        return ("CPU", "GPU")

    def run(self, circuit, **options):
        raise RuntimeError(self.fail)


def _machine(monkeypatch, *, build=("qiskit-aer-gpu", "0.18.2", 12), driver=(13, 0),
             runtimes=(13,), import_error: str | None = None, smi: bool = True,
             fail: str | None = None) -> None:
    monkeypatch.setattr(devices, "aer_build", lambda: build)
    monkeypatch.setattr(devices, "driver_cuda_version", lambda: driver)
    monkeypatch.setattr(devices, "cuda_runtimes", lambda: list(runtimes))
    monkeypatch.setattr(devices.shutil, "which",
                        lambda name: "/usr/bin/nvidia-smi" if smi else None)

    def import_aer():
        if import_error:
            raise ImportError(import_error)
        return type("Sim", (_FakeSimulator,), {"fail": fail})

    monkeypatch.setattr(devices, "_import_aer", import_aer)


def _refusal() -> str:
    why = devices.gpu_problem()
    assert why is not None and "\n" not in why and why.startswith("aer_gpu: ")
    with pytest.raises(BackendError) as err:
        resolve_backend("aer_gpu").require()
    assert str(err.value) == why  # the CLI prints this one line
    assert resolve_backend("aer_gpu").status() == f"not available here: {why[len('aer_gpu: '):]}"
    return why


def test_cuda13_machine_without_the_cuda12_wheels(monkeypatch):
    """The lent GPU machines: driver 580 (CUDA 13), CUDA 13 runtime, the CUDA 12 wheel's libraries
    missing, so importing qiskit_aer fails on a CUDA 12 library."""
    _machine(monkeypatch, import_error="libcusolver.so.11: cannot open shared object file: "
                                       "No such file or directory")
    why = _refusal()
    assert "qiskit-aer-gpu 0.18.2 is built for CUDA 12 but cannot load libcusolver.so.11" in why
    assert "found here: CUDA 13 runtime, driver CUDA 13.0" in why
    assert "pip install --force-reinstall qiskit-aer-gpu==0.18.2" in why
    assert "also run on CUDA 13 drivers" in why and "--backend aer" in why


def test_driver_older_than_the_build(monkeypatch):
    _machine(monkeypatch, driver=(11, 4), runtimes=(11,))
    why = _refusal()
    assert "built for CUDA 12 but the NVIDIA driver here supports CUDA 11.4 only" in why
    assert "driver >= 525.60" in why and "qiskit-aer-gpu-cu11==0.18.2" in why


def test_cuda11_build_on_an_old_driver(monkeypatch):
    _machine(monkeypatch, build=("qiskit-aer-gpu-cu11", "0.18.2", 11), driver=(10, 2))
    why = _refusal()
    assert "qiskit-aer-gpu-cu11 0.18.2 is built for CUDA 11" in why and "CUDA 10.2" in why


def test_no_driver(monkeypatch):
    _machine(monkeypatch, driver=None, runtimes=(), smi=False)
    assert "no NVIDIA driver" in _refusal()


def test_not_installed(monkeypatch):
    _machine(monkeypatch, build=None, import_error="No module named 'qiskit_aer'")
    why = _refusal()
    assert "qiskit-aer-gpu is not installed" in why and "pip install" in why


def test_a_failing_test_circuit_names_build_and_driver(monkeypatch):
    _machine(monkeypatch, fail="CUDA error: no kernel image is available for this device")
    why = _refusal()
    assert "a test circuit failed on the GPU (CUDA error: no kernel image" in why
    assert "qiskit-aer-gpu 0.18.2 is built for CUDA 12" in why and "driver CUDA 13.0" in why


def test_a_working_gpu_build_is_not_refused(monkeypatch):
    class Ok(_FakeSimulator):
        def run(self, circuit, **options):
            return type("Job", (), {"result": lambda self: type("R", (), {"success": True})()})()

    _machine(monkeypatch)
    monkeypatch.setattr(devices, "_import_aer", lambda: Ok)
    assert devices.gpu_problem() is None
    assert resolve_backend("aer_gpu").problem() is None
