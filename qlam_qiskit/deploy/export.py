"""Export one input's bound circuit, its observables and the exact engine's values: what a
hardware run of a trained model executes, in QPY or OpenQASM 3 (a damped memory's with its
mid-circuit resets, its observables on the 2n qubits)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..circuits.readout import query_observables
from ..circuits.sequence import sequence_parameter_values
from ..errors import QLAMError
from ..io import save_bytes, save_json, save_text
from ..models.damped import DampedQLAMLayer
from ..models.primitive import on_circuit, sequence_template
from .evaluate import load_models, load_test_split

FORMATS = ("qpy", "qasm3")
"""Circuit file formats ``export_sample`` writes."""


def final_readouts(layer: torch.nn.Module, x: torch.Tensor) -> list[float]:
    """The exact engine's K·M readouts of the one memory after the last token of x (1, T, d)."""
    if isinstance(layer, DampedQLAMLayer):  # density matrix as Pauli vectors (T, 1, 1, 4^n)
        r = layer.states(x)
        return layer.read(r[-1]).reshape(-1).tolist()
    th = layer.input_angles(x)  # (1, T, 1, m)
    state_t = layer.engine.run(th.permute(1, 2, 0, 3), layer.mixing(), all_states=False)  # (1,1,D)
    return layer.measure(state_t, layer.basis).reshape(-1).tolist()


def export_sample(state: dict, sample: int, fmt: str, out: Path) -> dict:
    """Bound sequence circuit of one test input, its K·M observables and the exact values."""
    from qiskit import qasm3, qpy

    exact, prim = load_models(state)
    x, _ = load_test_split(state, None)
    if not 0 <= sample < len(x):
        raise QLAMError(f"--sample {sample} is outside the test split (0..{len(x) - 1})")
    layer = prim.blocks[0].mixer
    with torch.no_grad():
        _, theta = prim.angles(x[sample:sample + 1])  # (1, T, m)
        tpl = sequence_template(prim, x.shape[1])
        values = sequence_parameter_values(tpl, theta[0].numpy(),
                                           prim.circuit_weights().numpy())  # (P,)
        circuit = tpl.circuit.assign_parameters(dict(zip(tpl.circuit.parameters, values)))
        evs = final_readouts(exact.blocks[0].mixer, exact.blocks[0].norm1(
            exact.embed_tokens(x[sample:sample + 1])))  # (K·M,) exact engine
    obs = on_circuit(query_observables(layer.readout_template, layer.basis[0].detach().numpy()),
                     circuit.num_qubits)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"sample{sample}"
    if fmt == "qpy":
        path = stem.with_suffix(".qpy")
        buf = io.BytesIO()
        qpy.dump(circuit, buf)
        save_bytes(buf.getvalue(), path)
    else:
        path = stem.with_suffix(".qasm")
        save_text(qasm3.dumps(circuit), path)
    save_json({"num_qubits": circuit.num_qubits, "order": "query-major: K queries x M terms",
               "terms": [list(t) for t in layer.readout_template.terms],
               "observables": [{"labels": op.paulis.to_labels(),
                                "coeffs": [float(c.real) for c in op.coeffs]} for op in obs]},
              stem.with_name(f"sample{sample}_observables.json"))
    engine = "density matrix (Pauli transfer, float64)" if prim.damped else \
        "statevector (complex128)"
    save_json({"expectation_values": evs, "engine": engine,
               "sample": sample}, stem.with_name(f"sample{sample}_values.json"))
    return {"circuit": str(path), "observables": len(obs)}
