"""What the primitives backends need from this machine: Aer's GPU build, fake device snapshots,
an IBM Quantum account and the network. Each check fails with one line naming the fix
(``BackendError``), so the CLI never starts a run that cannot finish."""

from __future__ import annotations

import importlib
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


def gpu_problem() -> str | None:
    """Why Aer cannot run on a GPU here (None when it can): checks the build AND a real run.

    ``AerSimulator().available_devices()`` reports what the library was compiled for, not whether a
    GPU is present, so a one-qubit circuit is actually run on the GPU.
    """
    from qiskit import QuantumCircuit
    from qiskit_aer import AerSimulator

    if "GPU" not in AerSimulator().available_devices():
        return f"aer_gpu: this qiskit-aer build has no GPU support; {GPU_FIX}"
    if shutil.which("nvidia-smi") is None:
        return "aer_gpu: the qiskit-aer GPU build is installed but no NVIDIA driver (nvidia-smi) " \
               "is on this machine; run on a machine with an NVIDIA GPU or use --backend aer"
    qc = QuantumCircuit(1)
    qc.h(0)
    qc.save_statevector()
    try:
        res = AerSimulator(device="GPU", method="statevector").run(qc).result()
        ok = res.success
        why = getattr(res, "status", "")
    except Exception as err:  # noqa: BLE001 - any failure means no usable GPU
        ok, why = False, str(err).splitlines()[0] if str(err) else type(err).__name__
    if not ok:
        return f"aer_gpu: a test circuit failed on the GPU ({why}); check `nvidia-smi` and the " \
               "CUDA version qiskit-aer-gpu was built for, or use --backend aer"
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
