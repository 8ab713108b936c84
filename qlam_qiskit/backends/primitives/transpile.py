"""Transpile a parameterized template once per backend, cache the ISA circuit, map observables.

The ISA circuit is keyed on disk by the template's gates, the backend name, its calibration date
and the transpile options, so a second run (or an eval after a run) skips the pass manager. For
noisy local simulation of a device the circuit is cut down to its active qubits with a noise model
of only those qubits: a 156-qubit noise model costs seconds to serialise per job, 6 qubits cost ms.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from qiskit import qpy
from qiskit.circuit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager

from ...io import atomic_write

CACHE_ENV = "QLAM_CACHE_DIR"


@dataclass(frozen=True)
class TranspileOptions:
    """Pass-manager settings; all of them are part of the cache key."""

    optimization_level: int = 1
    """Preset pass manager level 0-3. Default: 1."""
    seed: int = 0
    """seed_transpiler, so layouts and routing repeat. Default: 0."""
    initial_layout: tuple[int, ...] | None = None
    """Physical qubit for each template qubit (e.g. from --entanglement coupling). Default: None."""


@dataclass(frozen=True)
class Compiled:
    """An ISA circuit ready for a backend, and where each template qubit ends up in it."""

    circuit: QuantumCircuit
    """The circuit to run: the ISA circuit, cut to its active qubits for fake devices."""
    final: tuple[int, ...]
    """final[i]: qubit of ``circuit`` holding template qubit i at the end (after routing)."""
    physical: tuple[int, ...]
    """Device qubit of each qubit of ``circuit``."""
    noise_model: Any = None
    """Aer NoiseModel of just ``physical`` (fake devices), else None."""
    cached: bool = False
    """True when the ISA circuit came from the disk cache."""

    def map_observables(self, observables: Sequence[SparsePauliOp]) -> list[SparsePauliOp]:
        """Template observables -> observables on ``circuit`` (SparsePauliOp.apply_layout)."""
        n = self.circuit.num_qubits
        return [op.apply_layout(list(self.final), num_qubits=n) for op in observables]

    @property
    def dynamic(self) -> bool:
        """Has mid-circuit resets (damped memories): simulators must run it as a density matrix."""
        return any(ins.operation.name == "reset" for ins in self.circuit.data)

    @property
    def two_qubit_gates(self) -> int:
        """Two-qubit gates in the ISA circuit (routing SWAPs show up here as 3 CZ each)."""
        return sum(1 for ins in self.circuit.data if ins.operation.num_qubits == 2)


def cache_dir() -> Path:
    """Where ISA circuits are cached: $QLAM_CACHE_DIR, else ~/.cache/qlam-qiskit/isa."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "qlam-qiskit" / "isa"


def template_digest(circuit: QuantumCircuit) -> str:
    """A stable hash of a circuit's gates, qubits and (symbolic) angles."""
    h = hashlib.sha256(f"{circuit.num_qubits}|{circuit.global_phase}".encode())
    for ins in circuit.data:
        qubits = [circuit.find_bit(q).index for q in ins.qubits]
        h.update(f"{ins.operation.name}{qubits}{[str(p) for p in ins.operation.params]};".encode())
    return h.hexdigest()[:20]


def cache_key(circuit: QuantumCircuit, name: str, calibration: str,
              opts: TranspileOptions) -> str:
    """File stem for the cached ISA circuit of ``circuit`` on backend ``name`` (calibrated at
    ``calibration``) with ``opts``."""
    stamp = f"{name}|{calibration}|{opts.optimization_level}|{opts.seed}|{opts.initial_layout}"
    return f"{name}-{template_digest(circuit)}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"


def _pass_manager(backend: Any, opts: TranspileOptions):
    return generate_preset_pass_manager(optimization_level=opts.optimization_level,
                                        backend=backend, seed_transpiler=opts.seed,
                                        initial_layout=list(opts.initial_layout)
                                        if opts.initial_layout else None)


def isa_circuit(circuit: QuantumCircuit, backend: Any, opts: TranspileOptions = TranspileOptions(),
                *, name: str, calibration: str = "", cache: bool = True
                ) -> tuple[QuantumCircuit, bool]:
    """The ISA circuit of ``circuit`` for the Qiskit ``backend`` called ``name`` (from the disk
    cache when there), and whether it came from the cache."""
    path = cache_dir() / f"{cache_key(circuit, name, calibration, opts)}.qpy"
    if cache and path.is_file():
        with open(path, "rb") as f:
            return qpy.load(f)[0], True
    isa = _pass_manager(backend, opts).run(circuit)
    names = [p.name for p in circuit.parameters]
    if [p.name for p in isa.parameters] != names:
        raise ValueError("transpiling dropped or renamed circuit parameters; "
                         "use a lower --optimization-level")
    if cache:
        buf = io.BytesIO()
        qpy.dump(isa, buf)
        atomic_write(path, lambda p: p.write_bytes(buf.getvalue()))
    return isa, False


def active_qubits(circuit: QuantumCircuit) -> tuple[int, ...]:
    """Qubits touched by any instruction, ascending."""
    used = {circuit.find_bit(q).index for ins in circuit.data for q in ins.qubits}
    return tuple(sorted(used))


def compact(circuit: QuantumCircuit, qubits: Sequence[int]) -> QuantumCircuit:
    """``circuit`` restricted to ``qubits`` (renumbered 0..k-1); other qubits must be idle."""
    pos = {q: i for i, q in enumerate(qubits)}
    out = QuantumCircuit(len(qubits), global_phase=circuit.global_phase, name=circuit.name)
    for ins in circuit.data:
        out.append(ins.operation, [pos[circuit.find_bit(q).index] for q in ins.qubits])
    return out


class _TargetView:
    """The parts of a Target that Aer's noise builders read, restricted to some qubits."""

    def __init__(self, target: Any, qubits: Sequence[int]) -> None:
        self._target, self._keep = target, set(qubits)
        self.qubit_properties = target.qubit_properties
        self.num_qubits = target.num_qubits

    def operation_from_name(self, name: str) -> Any:
        return self._target.operation_from_name(name)

    def get(self, name: str, default: Any = None) -> Any:
        return self._target.get(name, default)

    def items(self):
        for name, props in self._target.items():
            if props is None:
                yield name, None
            else:
                yield name, {qs: p for qs, p in props.items()
                             if qs is not None and set(qs) <= self._keep}


def reduced_noise_model(backend: Any, qubits: Sequence[int]) -> Any:
    """An Aer NoiseModel with the device's gate and readout errors on ``qubits`` only, renumbered.

    Same errors as NoiseModel.from_backend (depolarizing + thermal relaxation per gate, readout),
    computed for the active qubits only: milliseconds instead of ~10 s for a 156-qubit device.
    """
    from qiskit_aer.noise import NoiseModel
    from qiskit_aer.noise.device.models import (_basic_device_target_gate_errors,
                                                basic_device_readout_errors)

    pos = {q: i for i, q in enumerate(qubits)}
    view = _TargetView(backend.target, qubits)
    model = NoiseModel(basis_gates=list(backend.operation_names))
    for qs, error in basic_device_readout_errors(None, target=view):
        if all(q in pos for q in qs):
            model.add_readout_error(error, [pos[q] for q in qs])
    for name, qs, error in _basic_device_target_gate_errors(view):
        model.add_quantum_error(error, name, [pos[q] for q in qs])
    return model


def compile_for(circuit: QuantumCircuit, backend: Any, opts: TranspileOptions = TranspileOptions(),
                *, name: str, calibration: str = "", simulate_noise: bool = False,
                cache: bool = True) -> Compiled:
    """Transpile ``circuit`` for the Qiskit ``backend``; with ``simulate_noise`` (a device
    snapshot simulated locally) cut it to its active qubits with a noise model of just those."""
    isa, cached = isa_circuit(circuit, backend, opts, name=name, calibration=calibration,
                              cache=cache)
    n = circuit.num_qubits
    final = tuple(isa.layout.final_index_layout()) if isa.layout is not None else tuple(range(n))
    if not simulate_noise:
        return Compiled(isa, final, tuple(range(isa.num_qubits)), None, cached)
    qubits = tuple(sorted(set(active_qubits(isa)) | set(final)))
    pos = {q: i for i, q in enumerate(qubits)}
    return Compiled(compact(isa, qubits), tuple(pos[q] for q in final), qubits,
                    reduced_noise_model(backend, qubits), cached)


def routing_swaps(circuit: QuantumCircuit, backend: Any,
                  opts: TranspileOptions = TranspileOptions()) -> int:
    """SWAPs the router inserts for ``circuit`` on the Qiskit ``backend`` (layout + routing only)."""
    pm = _pass_manager(backend, opts)
    pm.translation = pm.optimization = pm.scheduling = None
    pm.pre_optimization = pm.post_optimization = None
    routed = pm.run(circuit)
    return sum(1 for ins in routed.data if ins.operation.name == "swap")
