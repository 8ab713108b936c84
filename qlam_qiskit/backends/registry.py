"""One object per backend name: what it needs, whether it is usable here, how it transpiles and
evaluates circuits, and which training path runs on it.

``resolve_backend(name)`` is the only place a backend name is parsed. The exact engine
("statevector") is a backend like the others: it transpiles nothing, evaluates with Qiskit's own
``StatevectorEstimator`` (the reference), and trains through the torch engine (``exact``).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from ..errors import BackendError
from .primitives.estimator import RuntimeOptions, expectation_values
from .primitives.transpile import Compiled, TranspileOptions

EXACT = "statevector"
"""The exact engine's name, the default backend of ``run``."""


class Backend:
    """A way to run QLAM circuits. Subclasses set the class attributes and override what differs."""

    pattern: ClassVar[str]
    """The name as the CLI lists it (fake_<device> for a family)."""
    summary: ClassVar[str]
    needs: ClassVar[str]
    kind: ClassVar[str]
    """A short label for records and reports (never switched on: use the methods)."""
    exact: ClassVar[bool] = False
    """Trains with the exact torch engine (every model); otherwise through Estimator primitives
    (the hardware-compatible QLAM only)."""
    has_device: ClassVar[bool] = False
    """Has a coupling map and calibration (a device or its snapshot)."""

    def __init__(self, name: str, *, seed: int | None = None) -> None:
        self.name = name
        self.seed = seed
        """Simulator seed (noise sampling and Aer), None for the default."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # --- availability -----------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why this backend cannot be used on this machine now (None when it can)."""
        return None

    def require(self) -> "Backend":
        """Self, or a BackendError naming what is missing and how to get it."""
        why = self.problem()
        if why:
            raise BackendError(why)
        return self

    def status(self) -> str:
        """One line for ``qlam-qiskit backends``: ready, or why not."""
        why = self.problem()
        return "available here (ready)" if why is None else f"not available here: {why}"

    # --- the Qiskit side ---------------------------------------------------------------------
    @cached_property
    def qiskit(self) -> Any:
        """The Qiskit BackendV2 circuits are transpiled for and run on."""
        raise BackendError(f"{self.name} has no Qiskit backend")

    @property
    def calibration(self) -> str:
        """When the device was last calibrated ("" for simulators): part of the transpile cache key."""
        return ""

    @property
    def qiskit_target(self) -> Any:
        """The transpiler Target of a device (what reports cost circuits on)."""
        raise BackendError(f"--backend {self.name}: reports need a device target; use "
                           "fake_<device> (e.g. fake_fez), ibm_<device>, or a generic target "
                           "with --coupling-map")

    def coupling_chain(self, n: int) -> tuple[tuple[int, ...], bool]:
        """n natively coupled device qubits (a ring if possible): (physical qubits, is_ring)."""
        if not self.has_device:
            raise BackendError("--entanglement coupling follows a device's coupling map: use "
                               "--backend fake_<device> or ibm_<device>")
        from .primitives.layouts import coupling_chain

        return coupling_chain(self.qiskit_target, n)

    def transpile(self, circuit: QuantumCircuit, opts: TranspileOptions = TranspileOptions(),
                  *, cache: bool = True) -> Compiled:
        """The ISA circuit of ``circuit`` for this backend, and where its qubits end up."""
        from .primitives.transpile import compile_for

        return compile_for(circuit, self.qiskit, opts, name=self.name,
                           calibration=self.calibration, cache=cache)

    def check_options(self, runtime: RuntimeOptions) -> None:
        """Refuse Estimator options this backend ignores (device-only error suppression)."""
        given = runtime.device_only()
        if given:
            raise BackendError(f"{given[0]} only applies on ibm_<device>: {self.name} "
                               "(Aer / local testing mode) ignores it; drop it")

    def estimator(self, runtime: RuntimeOptions = RuntimeOptions(), *, noise_model: Any = None,
                  mode: Any = None, dynamic: bool = False) -> Any:
        """A BaseEstimatorV2 for circuits transpiled by ``transpile``; ``dynamic``
        (``Compiled.dynamic``: mid-circuit resets) asks for one that runs them exactly."""
        raise BackendError(f"backend {self.name!r} has no Estimator primitive")

    def evaluate(self, circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
                 values: np.ndarray, *, runtime: RuntimeOptions = RuntimeOptions(),
                 transpile: TranspileOptions = TranspileOptions()) -> np.ndarray:
        """⟨O_k⟩ of ``circuit`` bound to each row of ``values`` (B, P): transpile, estimate -> (B, K)."""
        compiled = self.transpile(circuit, transpile)
        est = self.estimator(runtime, noise_model=compiled.noise_model, dynamic=compiled.dynamic)
        return expectation_values(est, compiled.circuit, compiled.map_observables(observables),
                                  values)

    def mode(self, kind: str) -> Any:
        """A Runtime ``Session`` ("session", training) or ``Batch`` ("batch", evaluation) on IBM
        devices; None where jobs run locally."""
        return None

    def ledger(self, folder: Path) -> Any:
        """The run folder's job ledger (IBM devices: jobs paid for once), else None."""
        return None


class ExactBackend(Backend):
    pattern = EXACT
    summary = "exact torch statevector engine (training, CPU or CUDA)"
    needs = "nothing beyond the package"
    kind = "statevector"
    exact = True

    def transpile(self, circuit: QuantumCircuit, opts: TranspileOptions = TranspileOptions(),
                  *, cache: bool = True) -> Compiled:
        """Nothing to compile for: the template itself, qubits where they are."""
        n = circuit.num_qubits
        return Compiled(circuit, tuple(range(n)), tuple(range(n)))

    def estimator(self, runtime: RuntimeOptions = RuntimeOptions(), *, noise_model: Any = None,
                  mode: Any = None, dynamic: bool = False) -> Any:
        """Qiskit's exact reference Estimator (the torch engine is what trains). It would draw
        one random outcome per mid-circuit reset, so dynamic circuits are refused."""
        from qiskit.primitives import StatevectorEstimator

        self.check_options(runtime)
        if dynamic:
            raise BackendError(f"{self.name}'s StatevectorEstimator cannot run mid-circuit "
                               "resets (damped memories) exactly: use --backend aer")
        return StatevectorEstimator(default_precision=runtime.effective_precision,
                                    seed=runtime.seed)


class AerBackend(Backend):
    pattern = "aer"
    summary = ("Qiskit Aer EstimatorV2 (exact by default; --shots for sampling noise) through "
               "EstimatorQNN + TorchConnector")
    needs = "qiskit-aer"
    kind = "aer"
    device = "CPU"

    def problem(self) -> str | None:
        from .primitives.devices import has_module

        return None if has_module("qiskit_aer") else "pip install qiskit-aer"

    @cached_property
    def qiskit(self) -> Any:
        self.require()
        from qiskit_aer import AerSimulator

        return AerSimulator(method="statevector", device=self.device, seed_simulator=self.seed)

    def estimator(self, runtime: RuntimeOptions = RuntimeOptions(), *, noise_model: Any = None,
                  mode: Any = None, dynamic: bool = False) -> Any:
        from .primitives.estimator import aer_estimator

        self.check_options(runtime)
        return aer_estimator(runtime, device=self.device, dynamic=dynamic)


class AerGpuBackend(AerBackend):
    pattern = "aer_gpu"
    summary = "Qiskit Aer EstimatorV2 on an NVIDIA GPU"
    needs = ("qiskit-aer-gpu instead of qiskit-aer (pip install 'qlam-qiskit[gpu]'), an NVIDIA "
             "GPU and the CUDA runtime of its build: 0.18 wheels are CUDA 12 (they run on CUDA 12 "
             "and 13 drivers; qiskit-aer-gpu-cu11 for CUDA 11; no CUDA 13 build upstream)")
    kind = "aer_gpu"
    device = "GPU"

    def problem(self) -> str | None:
        """Why Aer cannot run on a GPU here, in one line (``devices.gpu_problem``: the build, the
        driver and CUDA majors it needs against those found, and a real run)."""
        from .primitives.devices import gpu_problem

        why = gpu_problem()
        return None if why is None else why.split(": ", 1)[-1]

    def require(self) -> Backend:
        from .primitives.devices import gpu_problem

        if self.problem() is not None:
            raise BackendError(gpu_problem() or self.problem())
        return self


class FakeBackend(Backend):
    pattern = "fake_<device>"
    summary = ("noisy device snapshot (e.g. fake_fez, fake_torino, fake_brisbane), simulated "
               "offline on its active qubits only")
    needs = "qiskit-ibm-runtime (fake_provider)"
    kind = "fake"
    has_device = True

    def problem(self) -> str | None:
        from .primitives.devices import has_module

        ok = has_module("qiskit_ibm_runtime.fake_provider")
        return None if ok else "pip install qiskit-ibm-runtime"

    def status(self) -> str:
        return "available here (ready, offline)" if self.problem() is None else super().status()

    def require(self) -> Backend:
        super().require()
        self.qiskit  # an unknown device name is refused here, listing real ones
        return self

    @cached_property
    def qiskit(self) -> Any:
        from .primitives.devices import fake_backend

        return fake_backend(self.name[len("fake_"):])

    @property
    def calibration(self) -> str:
        from .primitives.devices import calibration_stamp

        return calibration_stamp(self.qiskit)

    @property
    def qiskit_target(self) -> Any:
        return self.qiskit.target

    def transpile(self, circuit: QuantumCircuit, opts: TranspileOptions = TranspileOptions(),
                  *, cache: bool = True) -> Compiled:
        """The ISA circuit cut to its active qubits, with a noise model of just those."""
        from .primitives.transpile import compile_for

        return compile_for(circuit, self.qiskit, opts, name=self.name,
                           calibration=self.calibration, simulate_noise=True, cache=cache)

    def estimator(self, runtime: RuntimeOptions = RuntimeOptions(), *, noise_model: Any = None,
                  mode: Any = None, dynamic: bool = False) -> Any:
        from .primitives.estimator import aer_estimator

        self.check_options(runtime)
        return aer_estimator(runtime, noise_model=noise_model, dynamic=dynamic)


class IBMBackend(Backend):
    pattern = "ibm_<device>"
    summary = ("IBM Quantum device through Runtime (Session to train, Batch to evaluate), "
               "executor-based Estimator")
    needs = "an IBM Quantum account (qlam-qiskit account save) and network access"
    kind = "ibm"
    has_device = True

    def problem(self) -> str | None:
        try:
            from qiskit_ibm_runtime.accounts import AccountManager, AccountNotFoundError
        except ImportError:
            return "pip install qiskit-ibm-runtime"
        try:
            AccountManager.get()
        except AccountNotFoundError:
            return "no saved account: run `qlam-qiskit account save`"
        except Exception as err:  # noqa: BLE001 - an unreadable accounts file is "not usable"
            return f"accounts file unreadable ({type(err).__name__})"
        from .primitives.devices import network_problem

        why = network_problem()
        return None if why is None else why.split(";")[0]

    def status(self) -> str:
        return "available here (account saved)" if self.problem() is None else super().status()

    @cached_property
    def service(self) -> Any:
        """The QiskitRuntimeService of the saved account."""
        from .primitives.devices import runtime_service

        return runtime_service()

    @cached_property
    def qiskit(self) -> Any:
        try:
            return self.service.backend(self.name)
        except BackendError:
            raise
        except Exception as err:  # noqa: BLE001
            raise BackendError(f"backend {self.name!r} is not available to this account: "
                               f"{str(err).splitlines()[0]}") from None

    def require(self) -> Backend:
        self.qiskit  # account, network and device, each with its own one-line reason
        return self

    @property
    def calibration(self) -> str:
        from .primitives.devices import calibration_stamp

        return calibration_stamp(self.qiskit)

    @property
    def qiskit_target(self) -> Any:
        return self.qiskit.target

    def check_options(self, runtime: RuntimeOptions) -> None:
        """Every option applies on a device."""

    def estimator(self, runtime: RuntimeOptions = RuntimeOptions(), *, noise_model: Any = None,
                  mode: Any = None, dynamic: bool = False) -> Any:
        from .primitives.estimator import runtime_estimator

        return runtime_estimator(mode or self.qiskit, runtime)  # devices run resets natively

    def mode(self, kind: str) -> Any:
        from qiskit_ibm_runtime import Batch, Session

        return (Session if kind == "session" else Batch)(backend=self.qiskit)

    def ledger(self, folder: Path) -> Any:
        from .primitives.jobs import JobLedger

        return JobLedger(Path(folder) / "jobs.jsonl", retrieve=self.service.job)


class GenericBackend(Backend):
    """A device model from a coupling spec and basis gates, to cost circuits on (reports)."""

    pattern = "generic"
    summary = "a generic device model (--coupling-map, --basis-gates, --noise) for reports"
    needs = "nothing beyond the package"
    kind = "generic"
    has_device = True

    def __init__(self, name: str, target: Any) -> None:
        super().__init__(name)
        self._target = target

    @property
    def qiskit_target(self) -> Any:
        return self._target

    @cached_property
    def qiskit(self) -> Any:
        raise BackendError(f"{self.name} is a device model for reports; it runs no circuits")


BACKENDS: tuple[type[Backend], ...] = (ExactBackend, AerBackend, AerGpuBackend, FakeBackend,
                                       IBMBackend)
"""The backend families ``run``, ``eval`` and ``backends`` accept, in listing order."""


def backend_names() -> list[str]:
    """Names as shown in --help."""
    return [b.pattern for b in BACKENDS]


def resolve_backend(name: str, *, seed: int | None = None) -> Backend:
    """The Backend for a name (statevector, aer, aer_gpu, fake_<device>, ibm_<device>); a
    BackendError naming the choices for anything else. Nothing is checked or loaded yet: call
    ``require()`` (or use it) for that."""
    for cls in BACKENDS:
        family = cls.pattern.removesuffix("<device>")
        if name == cls.pattern or (family != cls.pattern and name.startswith(family)
                                   and len(name) > len(family)):
            return cls(name, seed=seed)
    raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(backend_names())}")


def generic_backend(basis_gates: str, coupling: str, noise: str | None = None) -> GenericBackend:
    """A generic device model: ``basis_gates`` on every qubit / pair of ``coupling``, with
    optional uniform ``noise`` (see ``primitives.generic``)."""
    from .primitives.generic import generic_target

    return GenericBackend(*generic_target(basis_gates, coupling, noise))
