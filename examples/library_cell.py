"""A cell from Qiskit's circuit library: train it exactly, then run it on Aer's Estimator.

A QLAM cell is any circuit with per-token input angles (a ParameterVector named ``x``) and shared
trainable angles (a ParameterVector named ``w``). Here: RZ(x[q]) on every qubit, then
``efficient_su2`` (RY/RZ layers and a CX chain) named with prefix "w".

Data: the embedded 14x14 MNIST subset (no download). ``patch=28`` groups 28 consecutive pixels
(two image rows) into one token, so an image is a sequence of 7 tokens.

    python examples/library_cell.py          # ~1 minute or less on 2 CPU cores
    python examples/library_cell.py --tiny   # a few seconds (used by the tests)
"""

import argparse
import tempfile
from dataclasses import replace

import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.circuit.library import efficient_su2

from qlam_qiskit import (DataSpec, ModelConfig, PrimitiveQLAM, QLAMClassifier, TrainConfig,
                         attach_backend, cell_from_circuit, resolve_backend, train)

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="small data and one epoch (for tests)")
args = parser.parse_args()
N_TRAIN, N_TEST, EPOCHS, PATCH = (64, 32, 1, 49) if args.tiny else (1000, 200, 6, 28)

# 1. The cell: inputs x[0..n-1] (one angle per qubit per token), weights w[...] (shared).
n = 3
x = ParameterVector("x", n)
circuit = QuantumCircuit(n)
for q in range(n):
    circuit.rz(x[q], q)
circuit = circuit.compose(efficient_su2(n, reps=1, parameter_prefix="w"))
cell = cell_from_circuit(circuit)
print(f"cell: {n} qubits, {len(cell.inputs)} inputs, {len(cell.weights)} weights")

# 2. Data and the hardware-compatible model shape: one memory (layers=1, heads=1) read once
#    after the last token (pool="last"). Only this shape runs on Estimator primitives.
data = DataSpec("mnist-mini", patch=PATCH, limit_train=N_TRAIN, limit_test=N_TEST).load(seed=0)
T = data.seq_len
cfg = ModelConfig(d_input=data.channels, num_classes=10, layers=1, heads=1, pool="last",
                  d_model=32, max_len=T)
torch.manual_seed(0)
model = QLAMClassifier(cfg, cell=cell)  # qubits are taken from the cell

# 3. Train on the exact torch engine (writes checkpoint.pt, metrics.jsonl into a folder).
with tempfile.TemporaryDirectory() as out:
    result = train(model, data, TrainConfig(epochs=EPOCHS, batch_size=32, lr=1e-2), out,
                   progress=False)
print(f"trained {EPOCHS} epoch(s) on {N_TRAIN} images of {T} tokens, "
      f"exact test accuracy {result['test_accuracy']:.3f}")

# 4. The same weights in double precision, twice: on the exact engine, and through Qiskit Aer's
#    EstimatorV2 (PrimitiveQLAM shares the state dict). Both precisions must be set: the engine
#    dtype (cfg.dtype) and the torch parameters (.double()).
cfg64 = replace(cfg, dtype="complex128")
exact = QLAMClassifier(cfg64, cell=cell).double()
exact.load_state_dict(model.state_dict())
on_aer = PrimitiveQLAM(cfg64, cell=cell).double()
on_aer.load_state_dict(model.state_dict())
attach_backend(on_aer, resolve_backend("aer"), T)  # transpiles the T-token circuit for Aer

x_test, y_test = data.x_test.double(), data.y_test
with torch.no_grad():
    logits_exact, logits_aer = exact(x_test), on_aer(x_test)
acc = lambda logits: (logits.argmax(-1) == y_test).float().mean().item()  # noqa: E731
print(f"exact engine accuracy {acc(logits_exact):.3f}")
print(f"Aer Estimator accuracy {acc(logits_aer):.3f}")
print(f"max |logit difference| = {(logits_exact - logits_aer).abs().max().item():.1e}")
