"""Estimator primitives per target, and one broadcast PUB per circuit (K observables × B samples).

Choice of primitive, deliberately:

* ``aer``, ``aer_gpu``, ``fake_<device>``: ``qiskit_aer.primitives.EstimatorV2`` directly. It is
  what Runtime's local testing mode runs underneath, but called directly it takes our reduced
  noise model (active qubits only) and exact settings (``default_precision=0``, statevector or
  density-matrix method). Fake devices run as an exact density-matrix simulation of the noise
  model, and so do circuits with mid-circuit resets (damped memories) on ``aer``/``aer_gpu``;
  shots add Gaussian noise of 1/sqrt(shots) (how Aer's EstimatorV2 models precision).
* ``ibm_<device>``: ``qiskit_ibm_runtime.executor_estimator.Estimator``, the executor-based
  Estimator that replaces the deprecated ``EstimatorV2`` from qiskit-ibm-runtime 0.50 on. It is a
  ``BaseEstimatorV2``, so EstimatorQNN takes it unchanged, in a ``Session`` (training) or ``Batch``.

Runtime options (``RuntimeOptions``): precision/shots apply everywhere; resilience level,
dynamical decoupling and twirling are server-side error suppression/mitigation and only apply on
``ibm_<device>``. Local testing mode and Aer ignore them, so they are refused off-device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2
from qiskit.quantum_info import SparsePauliOp

from .jobs import job_key

DEVICE_ONLY = {"resilience_level": "--resilience-level", "dynamical_decoupling": "--dd",
               "twirling": "--twirling"}
"""Options only IBM devices honour (local testing mode and Aer ignore them), with their CLI flags."""


@dataclass(frozen=True)
class RuntimeOptions:
    """Estimator options exposed on the CLI; None means the primitive's default."""

    shots: int | None = None
    """Shots per observable group; None: exact on simulators (precision 0). Default: None."""
    precision: float | None = None
    """Target standard error per expectation value (overrides shots). Default: None."""
    resilience_level: int | None = None
    """IBM devices only: 0 none, 1 readout mitigation (TREX), 2 + ZNE. Default: None."""
    dynamical_decoupling: bool = False
    """IBM devices only: XpXm sequences on idle qubits. Default: False."""
    twirling: bool = False
    """IBM devices only: Pauli twirling of gates and measurements. Default: False."""
    seed: int | None = None
    """Simulator seed (noise sampling). Default: None."""

    @property
    def effective_precision(self) -> float:
        """Precision the estimator is asked for: given, else 1/sqrt(shots), else 0 (exact)."""
        if self.precision is not None:
            return float(self.precision)
        return 1.0 / float(np.sqrt(self.shots)) if self.shots else 0.0

    def device_only(self) -> list[str]:
        """The options given that only IBM devices honour (as CLI flags)."""
        return [flag for n, flag in DEVICE_ONLY.items() if getattr(self, n) not in (None, False)]


def aer_estimator(opts: RuntimeOptions = RuntimeOptions(), *, device: str = "CPU",
                  noise_model: Any = None, dynamic: bool = False) -> BaseEstimatorV2:
    """Aer's EstimatorV2: exact statevector (on ``device``), or density matrix with a noise model
    or for ``dynamic`` circuits (mid-circuit resets: a statevector would follow one random
    trajectory of them, the density matrix is their exact channel)."""
    from qiskit_aer.primitives import EstimatorV2 as AerEstimator

    mixed = noise_model is not None or dynamic
    backend_options: dict = {"method": "density_matrix" if mixed else "statevector"}
    if device != "CPU":
        backend_options["device"] = device
    if noise_model is not None:
        backend_options["noise_model"] = noise_model
    run_options = {"seed_simulator": opts.seed} if opts.seed is not None else {}
    return AerEstimator(options={"default_precision": opts.effective_precision,
                                 "backend_options": backend_options, "run_options": run_options})


def runtime_estimator(mode: Any, opts: RuntimeOptions = RuntimeOptions()) -> BaseEstimatorV2:
    """The executor-based Runtime Estimator on a device, Session or Batch (``mode``)."""
    from qiskit_ibm_runtime.executor_estimator import Estimator

    est = Estimator(mode=mode)
    if opts.precision is not None or opts.shots:
        est.options.default_precision = opts.effective_precision
    if opts.resilience_level is not None:
        est.options.resilience_level = opts.resilience_level
    est.options.dynamical_decoupling.enable = opts.dynamical_decoupling
    est.options.twirling.enable_gates = opts.twirling
    est.options.twirling.enable_measure = opts.twirling
    return est


def broadcast_pub(circuit: QuantumCircuit, observables: Sequence[SparsePauliOp],
                  values: np.ndarray) -> tuple:
    """One PUB: observables shaped (K, 1) against parameter values (B, P) -> results (K, B)."""
    obs = np.empty((len(observables), 1), dtype=object)
    for k, op in enumerate(observables):
        obs[k, 0] = op
    return circuit, obs, np.asarray(values, dtype=float).reshape(-1, circuit.num_parameters)


def expectation_values(estimator: BaseEstimatorV2, circuit: QuantumCircuit,
                       observables: Sequence[SparsePauliOp], values: np.ndarray,
                       precision: float | None = None, ledger: Any = None) -> np.ndarray:
    """<O_k> for every sample in one job: values (B, P) -> (B, K) float64.

    With a ``ledger`` (a JobLedger, IBM devices), a job already submitted for the same PUB is
    collected by id instead of run again, a new job's id is recorded before its result is
    awaited, and a job that fails or vanishes is submitted again (``JobLedger.collect``).
    """
    values = np.asarray(values, dtype=float)  # (B, P)

    def submit() -> Any:
        return estimator.run([broadcast_pub(circuit, observables, values)], precision=precision)

    if ledger is None:
        result = submit().result()
    else:  # failed or vanished jobs are submitted again; finished ones are never paid twice
        result = ledger.collect(job_key(circuit, observables, values, precision), submit)
    evs = np.asarray(result[0].data.evs, dtype=float)  # (K, B)
    return evs.reshape(len(observables), len(values)).T
