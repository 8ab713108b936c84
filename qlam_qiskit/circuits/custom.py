"""Bring your own cell: any parameterized QuantumCircuit as a QLAM cell, from Python or a file.

A cell is the unitary of one token. Its parameters split into two vectors, found by name:

* **inputs** (per-token angles, fed by the layer's ``proj`` of each token): a ParameterVector
  named ``x``, ``θ`` or ``theta`` (``qlam_cell`` names its inputs ``θ``);
* **weights** (shared trainable angles, the layer's ``mix``): a ParameterVector named ``w``.

Element i of a vector is ``x[i]`` in Qiskit. OpenQASM 3 has no vectors, so a plain parameter
named ``x_i`` or ``_x_i_`` (what ``qiskit.qasm3.dumps`` writes for ``x[i]``) is element i too.
Every parameter must be an input or a weight; a cell needs at least one input (weights may be
absent); each vector's elements are ordered by index and must run 0..m-1 without gaps.
``cell_from_circuit(..., inputs=..., weights=...)`` (a ParameterVector or a vector name)
overrides the convention for that side, e.g. ``weights="θ"`` for a library block left with its
default ``θ`` prefix. Angles must be affine in the parameters for the exact engine to run them.

Files: ``.qpy`` (one circuit; ``save_cell`` records the two vector names in its metadata) or
OpenQASM 3 ``.qasm``/``.qasm3`` (needs ``pip install qiskit-qasm3-import``).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from qiskit import qpy
from qiskit.circuit import Parameter, ParameterVector, ParameterVectorElement, QuantumCircuit

from ..errors import QLAMError
from .cell import CellTemplate

INPUT_NAMES = ("x", "θ", "theta")
WEIGHT_NAMES = ("w",)
QPY_SUFFIXES = (".qpy",)
QASM_SUFFIXES = (".qasm", ".qasm3")
META_KEY = "qlam_cell"
"""circuit.metadata key of a saved cell: {"inputs": name, "weights": name}."""
_ELEMENT = re.compile(r"^_?(?P<name>.+?)(?:\[(?P<i>\d+)\]|_(?P<j>\d+)_?)$")
_HINT = "an input (x[i], θ[i] or theta[i]) nor a weight (w[j]; plain names x_i, _w_j_ also work)"


def _element(p: Parameter) -> tuple[str, int] | None:
    """(vector name, index) of a parameter: a vector element, or a plain name like x_0 or _x_0_."""
    if isinstance(p, ParameterVectorElement):
        return p.vector.name, p.index
    m = _ELEMENT.match(p.name)
    return (m["name"], int(m["i"] or m["j"])) if m else None


def _choose(groups: dict[str, list], given: ParameterVector | str | None, names: tuple[str, ...],
            taken: str | None, side: str) -> str | None:
    """The vector name playing ``side`` (inputs or weights): given, else by the convention."""
    if given is not None:
        name = given.name if isinstance(given, ParameterVector) else str(given)
        if name not in groups:
            raise QLAMError(f"{side}={name!r}: the circuit has no parameter of that vector "
                            f"(it has {', '.join(map(repr, groups)) or 'none'})")
        return name
    found = [g for g in groups if g in names and g != taken]
    if len(found) > 1:
        raise QLAMError(f"vectors {' and '.join(map(repr, found))} both look like {side}: rename "
                        "one (e.g. efficient_su2(n, parameter_prefix='w') for weights) or pass "
                        "inputs=/weights= to cell_from_circuit")
    return found[0] if found else None


def _vector(name: str, elems: list[tuple[int, Parameter]], given: ParameterVector | str | None,
            side: str) -> tuple[ParameterVector, dict[Parameter, Parameter]]:
    """The vector for one side and the renames (old parameter -> its element) it needs."""
    elems = sorted(elems, key=lambda e: e[0])
    idx = [i for i, _ in elems]
    if len(set(idx)) != len(idx):
        dup = next(i for i in idx if idx.count(i) > 1)
        same = [p.name for i, p in elems if i == dup]
        raise QLAMError(f"parameters {', '.join(same)} all give {name}[{dup}]: keep one name per "
                        "element")
    if idx != list(range(len(idx))):
        gap = next(i for i in range(len(idx) + 1) if i not in idx)
        raise QLAMError(f"{side} vector {name!r} uses elements {idx} but not {name}[{gap}]: number "
                        f"the elements 0..{len(idx) - 1} with every one in the circuit")
    params = [p for _, p in elems]
    if isinstance(given, ParameterVector):
        vec = given
    elif all(isinstance(p, ParameterVectorElement) for p in params) \
            and all(p.vector == params[0].vector for p in params):
        vec = params[0].vector
    else:  # plain parameters (e.g. from OpenQASM 3): a fresh vector
        vec = ParameterVector(name, len(params))
    if len(vec) != len(params):
        raise QLAMError(f"{side} vector {name!r} has {len(vec)} elements but the circuit uses "
                        f"{len(params)}: size the vector to the circuit")
    return vec, {p: vec[i] for i, p in enumerate(params) if p != vec[i]}


def cell_from_circuit(circuit: QuantumCircuit, *, inputs: ParameterVector | str | None = None,
                      weights: ParameterVector | str | None = None) -> CellTemplate:
    """Any parameterized circuit as a cell; inputs and weights by the module's naming convention."""
    if not isinstance(circuit, QuantumCircuit):
        raise QLAMError(f"a cell is a QuantumCircuit, got {type(circuit).__name__}")
    bad = sorted({i.operation.name for i in circuit.data if i.operation.name in ("measure", "reset")})
    if circuit.num_clbits or bad:
        raise QLAMError(f"the cell has {', '.join(bad) or 'classical bits'}: a cell is the unitary "
                        "of one token (the readout measures); remove them")
    groups: dict[str, list[tuple[int, Parameter]]] = {}
    for p in circuit.parameters:
        key = _element(p)
        if key is None:
            raise QLAMError(f"parameter {p.name!r} is neither {_HINT}: rename it or pass "
                            "inputs=/weights= to cell_from_circuit")
        groups.setdefault(key[0], []).append((key[1], p))
    given_w = weights.name if isinstance(weights, ParameterVector) else weights
    in_name = _choose(groups, inputs, INPUT_NAMES, given_w, "inputs")
    w_name = _choose(groups, weights, WEIGHT_NAMES, in_name, "weights")
    if in_name is None:
        raise QLAMError("the cell has no input parameters (a ParameterVector x, θ or theta): a "
                        "cell needs per-token angles, e.g. qc.rz(x[q], q) on each qubit")
    if in_name == w_name:
        raise QLAMError(f"{in_name!r} cannot be both the inputs and the weights")
    if w_name == "x":  # qlam_sequence names the unrolled inputs x: the names would clash
        raise QLAMError("weights may not be named 'x' (the unrolled sequence's inputs): rename "
                        "them, e.g. to w")
    w_desc = f"{w_name}[j]" if w_name else "none found: pass weights=" if in_name == "w" else "w[j]"
    for g, elems in groups.items():
        if g not in (in_name, w_name):
            raise QLAMError(f"parameter {elems[0][1].name!r} is neither an input ({in_name}[i]) "
                            f"nor a weight ({w_desc}): rename it or pass inputs=/weights= to "
                            "cell_from_circuit")
    x, rename = _vector(in_name, groups[in_name], inputs, "inputs")
    if w_name is None:
        w, more = ParameterVector("w", 0), {}
    else:
        w, more = _vector(w_name, groups[w_name], weights, "weights")
    qc = circuit.assign_parameters({**rename, **more}, inplace=False)
    return CellTemplate(None, qc, x, w)


def cell_to_bytes(template: CellTemplate) -> bytes:
    """The cell as QPY bytes (for a checkpoint), with its two vector names in the metadata."""
    qc = template.circuit.copy()
    qc.metadata = {**(qc.metadata or {}),
                   META_KEY: {"inputs": template.inputs.name, "weights": template.weights.name}}
    buf = io.BytesIO()
    qpy.dump(qc, buf)
    return buf.getvalue()


def _from_loaded(circuits: list, where: str) -> CellTemplate:
    """The one circuit of a QPY load as a cell, with the roles its metadata records."""
    if len(circuits) != 1:
        raise QLAMError(f"{where} holds {len(circuits)} circuits; a cell file holds exactly one")
    qc = circuits[0]
    roles = (qc.metadata or {}).get(META_KEY, {})
    if roles.get("weights") and not any(
            (_element(p) or ("",))[0] == roles["weights"] for p in qc.parameters):
        roles = {**roles, "weights": None}  # a cell without weights
    return cell_from_circuit(qc, inputs=roles.get("inputs"), weights=roles.get("weights"))


def cell_from_bytes(data: bytes) -> CellTemplate:
    """A cell back from ``cell_to_bytes``."""
    try:
        circuits = qpy.load(io.BytesIO(data))
    except Exception as err:  # QPY raises several kinds for truncated or foreign data
        raise QLAMError(f"the stored cell is not readable QPY: {str(err).splitlines()[0]}") from None
    return _from_loaded(circuits, "the stored cell")


def save_cell(template: CellTemplate, path: str | Path) -> Path:
    """Write the cell to ``.qpy``, or to OpenQASM 3 (``.qasm``/``.qasm3``, vectors named x and w)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in QPY_SUFFIXES:
        path.write_bytes(cell_to_bytes(template))
    elif suffix in QASM_SUFFIXES:
        from qiskit import qasm3

        x = ParameterVector("x", len(template.inputs))
        w = ParameterVector("w", len(template.weights))
        qc = template.circuit.assign_parameters(
            {**dict(zip(template.inputs, x)), **dict(zip(template.weights, w))}, inplace=False)
        path.write_text(qasm3.dumps(qc))
    else:
        raise QLAMError(f"cell file {str(path)!r}: name it .qpy or .qasm/.qasm3")
    return path


def load_cell(path: str | Path) -> CellTemplate:
    """Read a cell from a ``.qpy`` file (one circuit) or an OpenQASM 3 ``.qasm``/``.qasm3`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in QPY_SUFFIXES + QASM_SUFFIXES:
        raise QLAMError(f"cell file {str(path)!r}: use a .qpy file (qiskit.qpy.dump) or an "
                        "OpenQASM 3 .qasm/.qasm3 file")
    if not path.is_file():
        raise QLAMError(f"cell file {str(path)!r} does not exist")
    if suffix in QPY_SUFFIXES:
        try:
            with path.open("rb") as f:
                circuits = qpy.load(f)
        except Exception as err:  # QPY raises several kinds for truncated or foreign files
            raise QLAMError(f"cell file {str(path)!r} is not readable QPY: "
                            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        return _from_loaded(circuits, f"cell file {str(path)!r}")
    from qiskit import qasm3
    from qiskit.exceptions import MissingOptionalLibraryError

    try:
        qc = qasm3.load(str(path))
    except MissingOptionalLibraryError:
        raise QLAMError("reading OpenQASM 3 needs qiskit-qasm3-import: "
                        "pip install qiskit-qasm3-import") from None
    except Exception as err:  # parser and importer errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise QLAMError(f"cell file {str(path)!r} is not readable OpenQASM 3: {first}") from None
    return cell_from_circuit(qc)


def cell_info(template: CellTemplate) -> dict:
    """A JSON-able summary of a cell (for reports and logs): width, vectors, pairs, gate counts."""
    return {"cell": "qlam" if template.config is not None else "custom",
            "qubits": template.num_qubits, "inputs": len(template.inputs),
            "weights": len(template.weights),
            "pairs": [list(p) for p in template.entangling_pairs],
            "gates": {k: int(v) for k, v in template.circuit.count_ops().items()}}
