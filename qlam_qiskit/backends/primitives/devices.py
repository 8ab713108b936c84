"""What the primitives backends need from this machine: Aer's GPU build, fake device snapshots,
an IBM Quantum account and the network. Each check fails with one line naming the fix
(``BackendError``), so the CLI never starts a run that cannot finish."""

from __future__ import annotations

import importlib
import re
import shutil
import socket
from typing import Any

from qiskit.providers import BackendV2

from ...errors import BackendError

IBM_HOST = "quantum.cloud.ibm.com"
GPU_FIX = ("install the GPU build with `pip uninstall -y qiskit-aer && pip install "
           "'qlam-qiskit[gpu]'` (qiskit-aer-gpu ships the same qiskit_aer module)")


_NOT_DEVICES = ("FakeProviderForBackendV2", "FakeFractionalBackend")


def calibration_stamp(backend: BackendV2) -> str:
    """The backend's last calibration date as ISO text, or "" when it reports none."""
    props = getattr(backend, "properties", None)
    try:
        p = props() if callable(props) else None
    except Exception:  # noqa: BLE001 - a device without properties simply has no stamp
        p = None
    date = getattr(p, "last_update_date", None)
    return date.isoformat() if hasattr(date, "isoformat") else (str(date) if date else "")


def fake_backend(device: str) -> BackendV2:
    """The offline snapshot FakeDevice of qiskit_ibm_runtime.fake_provider for ``device``."""
    from qiskit_ibm_runtime import fake_provider

    cls = getattr(fake_provider, f"Fake{device.capitalize()}V2", None) or \
        getattr(fake_provider, f"Fake{device.capitalize()}", None)
    if cls is None:
        names = sorted(n[4:].lower().removesuffix("v2") for n in dir(fake_provider)
                       if n.startswith("Fake") and n not in _NOT_DEVICES)
        raise BackendError(f"no fake device {device!r} in qiskit_ibm_runtime.fake_provider; "
                          f"choose one of: {', '.join('fake_' + n for n in names[:12])}, ...")
    return cls()


AER_GPU_BUILDS = {"qiskit-aer-gpu": 12, "qiskit-aer-gpu-cu11": 11}
"""Aer's GPU distributions and the CUDA major version their wheels are built for (0.18: CUDA 12
and CUDA 11; no CUDA 13 build upstream, qiskit-aer issue 2374)."""
CUDA_FIX = {
    12: "`pip install --force-reinstall qiskit-aer-gpu=={v}` brings its CUDA 12 runtime wheels "
        "(nvidia-*-cu12, cuquantum-cu12), which also run on CUDA 13 drivers",
    11: "`pip install --force-reinstall qiskit-aer-gpu-cu11=={v}` brings its CUDA 11 runtime "
        "wheels (nvidia-*-cu11, cuquantum-cu11)",
}
DRIVER_FOR = {11: "driver >= 450.80", 12: "driver >= 525.60", 13: "driver >= 580"}
"""The oldest Linux driver each CUDA major runs on."""


def aer_build() -> tuple[str, str, int] | None:
    """The installed GPU build of Aer: (distribution, version, CUDA major it needs), or None."""
    from importlib import metadata

    for dist, major in AER_GPU_BUILDS.items():
        try:
            return dist, metadata.version(dist), major
        except metadata.PackageNotFoundError:
            continue
    return None


def driver_cuda_version() -> tuple[int, int] | None:
    """The CUDA version the NVIDIA driver supports (cuDriverGetVersion), or None without one."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
        ver = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(ver)) != 0 or ver.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    return ver.value // 1000, (ver.value % 1000) // 10


def cuda_runtimes() -> list[int]:
    """CUDA runtime major versions whose libcudart loads here (system paths or nvidia-* wheels)."""
    import ctypes
    import glob
    import site
    import sys

    found = set()
    dirs = [*sys.path, *getattr(site, "getsitepackages", list)()]
    for major, soname in ((11, "libcudart.so.11.0"), (12, "libcudart.so.12"),
                          (13, "libcudart.so.13")):
        if any(glob.glob(f"{d}/nvidia/**/{soname}", recursive=True) for d in dirs if d):
            found.add(major)
            continue
        try:
            ctypes.CDLL(soname)
            found.add(major)
        except OSError:
            pass
    return sorted(found)


def _found_here() -> str:
    """'CUDA 13 runtime, driver CUDA 13.0' or what is missing of it."""
    rt = cuda_runtimes()
    drv = driver_cuda_version()
    runtimes = (" and ".join(f"CUDA {m}" for m in rt) + " runtime") if rt else "no CUDA runtime"
    return f"{runtimes}, " + (f"driver CUDA {drv[0]}.{drv[1]}" if drv else "no NVIDIA driver")


def _import_aer():
    """qiskit_aer's AerSimulator (its import loads the CUDA libraries a GPU build links)."""
    from qiskit_aer import AerSimulator

    return AerSimulator


def gpu_problem() -> str | None:
    """Why Aer cannot run on a GPU here (None when it can), in one line naming the mismatch.

    Checks, in order: that qiskit_aer loads (a GPU build links its CUDA major's libraries: a
    missing one names the CUDA version it needs against the one found); that the build has GPU
    support (``available_devices()`` reports what the library was compiled for, not whether a GPU
    is present); that an NVIDIA driver is there and supports that CUDA major; then a one-qubit
    circuit is actually run on the GPU.
    """
    from qiskit import QuantumCircuit

    build = aer_build()
    try:
        simulator = _import_aer()
    except ImportError as err:
        if build is None:
            return f"aer_gpu: qiskit-aer-gpu is not installed; {GPU_FIX}"
        dist, ver, major = build
        missing = re.search(r"(lib[\w.+-]+\.so[\w.]*)", str(err))
        what = missing.group(1) if missing else str(err).splitlines()[0]
        return (f"aer_gpu: {dist} {ver} is built for CUDA {major} but cannot load {what} "
                f"(found here: {_found_here()}); {CUDA_FIX[major].format(v=ver)}, or use "
                "--backend aer")
    if "GPU" not in simulator().available_devices():
        return f"aer_gpu: this qiskit-aer build has no GPU support; {GPU_FIX}"
    driver = driver_cuda_version()
    if driver is None and shutil.which("nvidia-smi") is None:
        return "aer_gpu: the qiskit-aer GPU build is installed but no NVIDIA driver (nvidia-smi) " \
               "is on this machine; run on a machine with an NVIDIA GPU or use --backend aer"
    if build is not None and driver is not None and driver[0] < build[2]:
        dist, ver, major = build
        alt = ", switch to the CUDA 11 build (pip uninstall -y qiskit-aer-gpu && pip install " \
            f"qiskit-aer-gpu-cu11=={ver})" if major == 12 else ""
        return (f"aer_gpu: {dist} {ver} is built for CUDA {major} but the NVIDIA driver here "
                f"supports CUDA {driver[0]}.{driver[1]} only; update the driver (CUDA {major} "
                f"needs {DRIVER_FOR[major]}){alt}, or use --backend aer")
    qc = QuantumCircuit(1)
    qc.h(0)
    qc.measure_all()
    try:
        res = simulator(device="GPU", method="statevector").run(qc, shots=8).result()
        ok = res.success
        why = getattr(res, "status", "")
    except Exception as err:  # noqa: BLE001 - any failure means no usable GPU
        ok, why = False, str(err).splitlines()[0] if str(err) else type(err).__name__
    if not ok:
        built = f"{build[0]} {build[1]} is built for CUDA {build[2]}; " if build else ""
        return f"aer_gpu: a test circuit failed on the GPU ({why}); {built}found here: " \
               f"{_found_here()}; check `nvidia-smi`, or use --backend aer"
    return None


def network_problem(host: str = IBM_HOST, timeout: float = 3.0) -> str | None:
    """Why ``host`` cannot be reached over HTTPS (None when it can): DNS or TCP failure."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return None
    except OSError as err:
        return f"cannot reach {host} ({err.strerror or err}); this machine is offline or " \
               "behind a firewall, so IBM Quantum is unavailable (your token was not checked)"


def runtime_service(**kwargs: Any) -> Any:
    """A QiskitRuntimeService from the saved account, refusing offline / no-account clearly."""
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts import AccountNotFoundError

    try:
        from qiskit_ibm_runtime.accounts import AccountManager
        AccountManager.get(**kwargs)
    except AccountNotFoundError:
        raise BackendError("no IBM Quantum account is saved here; run `qlam-qiskit account save` "
                          "(token from a prompt or QISKIT_IBM_TOKEN)") from None
    problem = network_problem()
    if problem:
        raise BackendError(problem)
    try:
        return QiskitRuntimeService(**kwargs)
    except Exception as err:  # noqa: BLE001 - surface the service's own reason in one line
        raise BackendError(f"IBM Quantum refused the saved account: {str(err).splitlines()[0]}; "
                          "check it with `qlam-qiskit account save --overwrite`") from None


def has_module(module: str) -> bool:
    """Whether ``module`` imports (used by the backends listing)."""
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False
