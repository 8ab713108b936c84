"""A generic device model to cost circuits on, when no real device or snapshot is wanted.

A generic target is built from a basis-gate list and a coupling spec (``line:8``, ``ring:6``,
``grid:3x3``, ``full:5``, ``heavyhex:3`` or explicit edges ``0-1,1-2,2-0``), optionally with
uniform error rates, durations and T1/T2 (``--noise``) so the fidelity estimates have numbers.
"""

from __future__ import annotations

import re

from qiskit.circuit import Measure
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.providers import QubitProperties
from qiskit.transpiler import CouplingMap, InstructionProperties, Target

VIRTUAL = ("rz", "id")
"""Gates taken as error- and time-free on a generic target (frame changes, as on IBM devices)."""

NOISE_KEYS = {"1q": "error of each 1-qubit gate", "2q": "error of each 2-qubit gate",
              "readout": "measurement error", "t1": "T1 in seconds", "t2": "T2 in seconds",
              "1q_time": "1-qubit gate duration in s", "2q_time": "2-qubit gate duration in s",
              "readout_time": "measurement duration in s"}


def parse_coupling(spec: str) -> CouplingMap:
    """A coupling spec -> a bidirectional CouplingMap, or ValueError naming the accepted forms."""
    s = spec.strip().lower()
    forms = "line:N, ring:N, grid:RxC, full:N, heavyhex:D (odd D) or edges like 0-1,1-2,2-0"
    m = re.fullmatch(r"(line|ring|full|heavyhex):(\d+)", s)
    try:
        if m:
            kind, k = m.group(1), int(m.group(2))
            if k < 1 or (kind == "heavyhex" and k % 2 == 0):
                raise ValueError
            return {"line": CouplingMap.from_line, "ring": CouplingMap.from_ring,
                    "full": CouplingMap.from_full, "heavyhex": CouplingMap.from_heavy_hex}[kind](k)
        m = re.fullmatch(r"grid:(\d+)x(\d+)", s)
        if m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
            return CouplingMap.from_grid(int(m.group(1)), int(m.group(2)))
        if re.fullmatch(r"\d+-\d+(,\d+-\d+)*", s):
            edges = [tuple(int(v) for v in e.split("-")) for e in s.split(",")]
            if any(a == b for a, b in edges):
                raise ValueError
            used = {q for e in edges for q in e}
            if used != set(range(max(used) + 1)):
                raise ValueError
            both = sorted({e for a, b in edges for e in ((a, b), (b, a))})
            return CouplingMap(couplinglist=both)
    except ValueError:
        pass
    raise ValueError(f"--coupling-map {spec!r} is not a coupling spec; use {forms} "
                     "(edge lists must number the qubits 0..N-1 without gaps)")


def parse_noise(spec: str | None) -> dict[str, float]:
    """'2q=5e-3,t1=2e-4' -> {'2q': 0.005, 't1': 0.0002}; unknown keys or bad numbers raise."""
    out: dict[str, float] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        key, _, val = item.partition("=")
        key = key.strip().lower()
        try:
            v = float(val)
        except ValueError:
            v = -1.0
        if key not in NOISE_KEYS or v < 0 or (key in ("1q", "2q", "readout") and v > 1):
            raise ValueError(f"--noise {item.strip()!r}: give key=value with keys "
                             f"{', '.join(NOISE_KEYS)} (errors in [0, 1], times in seconds)")
        out[key] = v
    return out


def generic_target(basis_gates: str, coupling: str, noise: str | None = None
                   ) -> tuple[str, Target]:
    """A name and a Target with ``basis_gates`` on every qubit / coupled pair of ``coupling``
    (+ measure)."""
    cmap = parse_coupling(coupling)
    rates = parse_noise(noise)
    names = [g.strip().lower() for g in basis_gates.split(",") if g.strip()]
    lib = get_standard_gate_name_mapping()
    bad = [g for g in names if g not in lib or lib[g].num_qubits > 2 or g == "measure"]
    if not names or bad:
        raise ValueError(f"--basis-gates: unknown or unsupported gate(s) {', '.join(bad) or '(none)'}; "
                         "give standard 1-/2-qubit gate names, e.g. cz,rz,sx,x")
    if not any(lib[g].num_qubits == 2 for g in names) and cmap.size() > 1:
        raise ValueError("--basis-gates has no 2-qubit gate; add one, e.g. cz or cx or ecr")
    n = cmap.size()
    props = None
    if "t1" in rates or "t2" in rates:
        props = [QubitProperties(t1=rates.get("t1"), t2=rates.get("t2")) for _ in range(n)]
    target = Target(num_qubits=n, qubit_properties=props)
    edges = sorted(set(cmap.get_edges()))

    def ip(err_key: str, time_key: str, virtual: bool) -> InstructionProperties:
        if virtual:
            return InstructionProperties(duration=0.0, error=0.0)
        return InstructionProperties(duration=rates.get(time_key), error=rates.get(err_key))

    for g in names:
        gate = lib[g]
        if gate.num_qubits == 1:
            target.add_instruction(gate, {(q,): ip("1q", "1q_time", g in VIRTUAL) for q in range(n)})
        else:
            target.add_instruction(gate, {e: ip("2q", "2q_time", False) for e in edges})
    target.add_instruction(Measure(), {(q,): ip("readout", "readout_time", False) for q in range(n)})
    label = f"generic[{','.join(names)}|{coupling.strip()}]"
    return label, target
