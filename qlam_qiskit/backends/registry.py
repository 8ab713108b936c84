"""Every way to run a QLAM template, by name, with what it needs and whether it is usable here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendInfo:
    """A backend name as the CLI takes it, what it runs on, and what it needs."""

    name: str
    summary: str
    needs: str
    available: bool
    """Implemented in this release (``here`` says whether this machine can use it now)."""


BACKENDS: tuple[BackendInfo, ...] = (
    BackendInfo("statevector", "exact torch statevector engine (training, CPU or CUDA)",
                "nothing beyond the package", True),
    BackendInfo("aer", "Qiskit Aer EstimatorV2 (exact by default; --shots for sampling noise) "
                "through EstimatorQNN + TorchConnector", "qiskit-aer", True),
    BackendInfo("aer_gpu", "Qiskit Aer EstimatorV2 on an NVIDIA GPU",
                "qiskit-aer-gpu instead of qiskit-aer (pip install 'qlam-qiskit[gpu]') and an "
                "NVIDIA GPU", True),
    BackendInfo("fake_<device>", "noisy device snapshot (e.g. fake_fez, fake_torino, "
                "fake_brisbane), simulated offline on its active qubits only",
                "qiskit-ibm-runtime (fake_provider)", True),
    BackendInfo("ibm_<device>", "IBM Quantum device through Runtime (Session to train, Batch "
                "to evaluate), executor-based Estimator",
                "an IBM Quantum account (qlam-qiskit account save) and network access", True),
)


def backend_names() -> list[str]:
    """Names as shown in --help."""
    return [b.name for b in BACKENDS]


def resolve(name: str) -> BackendInfo:
    """The BackendInfo for ``name`` (fake_fez matches fake_<device>); ValueError if unknown."""
    for b in BACKENDS:
        if b.name == name or (b.name.endswith("<device>") and name.startswith(b.name[:-8])
                              and len(name) > len(b.name) - 8):
            return b
    raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(backend_names())}")


def require_available(name: str) -> BackendInfo:
    """Resolve ``name`` and refuse, with the way forward, a backend this release cannot run yet."""
    b = resolve(name)
    if not b.available:
        raise ValueError(f"backend {name!r} ({b.summary}) is not available in this release yet; "
                         "train with --backend statevector")
    return b


def usable_here(info: BackendInfo) -> tuple[bool, str]:
    """Whether this machine can use ``info`` now, and if not, why (checks, never connects)."""
    from .targets import gpu_problem, has_module

    if info.name == "statevector":
        return True, "ready"
    if info.name == "aer":
        return (True, "ready") if has_module("qiskit_aer") else (False, "pip install qiskit-aer")
    if info.name == "aer_gpu":
        problem = gpu_problem() if has_module("qiskit_aer") else "qiskit-aer-gpu not installed"
        return (problem is None, "ready" if problem is None else problem.split(": ", 1)[-1])
    if info.name.startswith("fake_"):
        ok = has_module("qiskit_ibm_runtime.fake_provider")
        return ok, "ready (offline)" if ok else "pip install qiskit-ibm-runtime"
    try:
        from qiskit_ibm_runtime.accounts import AccountManager, AccountNotFoundError

        AccountManager.get()
    except AccountNotFoundError:
        return False, "no saved account: run `qlam-qiskit account save`"
    except Exception as err:  # noqa: BLE001 - an unreadable accounts file is "not usable"
        return False, f"accounts file unreadable ({type(err).__name__})"
    from .targets import network_problem

    problem = network_problem()
    return (problem is None, "account saved" if problem is None else problem.split(";")[0])
