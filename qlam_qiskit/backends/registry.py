"""Every way to run a QLAM template, by name, with what it needs and whether it is here yet."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendInfo:
    """A backend name as the CLI takes it, what it runs on, and what it needs."""

    name: str
    summary: str
    needs: str
    available: bool


BACKENDS: tuple[BackendInfo, ...] = (
    BackendInfo("statevector", "exact torch statevector engine (training, CPU or CUDA)",
                "nothing beyond the package", True),
    BackendInfo("aer", "Qiskit Aer EstimatorV2 through EstimatorQNN + TorchConnector",
                "qiskit-aer", False),
    BackendInfo("aer_gpu", "Qiskit Aer EstimatorV2 on an NVIDIA GPU",
                "qiskit-aer-gpu and an NVIDIA GPU", False),
    BackendInfo("fake_<device>", "noisy device snapshot (e.g. fake_fez) in Runtime local mode",
                "qiskit-ibm-runtime", False),
    BackendInfo("ibm_<device>", "IBM Quantum device through a Runtime Session",
                "an IBM Quantum account (qlam-qiskit account save)", False),
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
