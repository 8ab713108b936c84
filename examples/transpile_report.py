"""What a QLAM circuit costs on hardware, from Python (the library behind `qlam-qiskit report`).

The default QLAM cell (RZ inputs, RY/RZ mixing, RZZ entanglers on a ring), at 6 qubits, is
unrolled over T tokens and transpiled for two targets: the fake_fez device snapshot (156 qubits,
heavy-hex coupling, offline) and a generic 6-qubit ring device with uniform noise. Two
entanglement layouts are compared:

* "ring": the cell's ring of 6 pairs, placed by Qiskit. A ring device holds it natively; a
  heavy-hex device has no 6-cycle, so the router inserts SWAPs at every token.
* "coupling": the cell's pairs follow a chain of natively coupled device qubits (a ring where
  the device has one, else a line: 5 pairs on fez), so no SWAPs are ever needed. This is a
  slightly different model: train it with `qlam-qiskit run --entanglement coupling`.

Short sequences are transpiled; longer ones are extrapolated from the per-token cost.

    python examples/transpile_report.py          # about 10 s on 2 CPU cores
    python examples/transpile_report.py --tiny   # fewer lengths (used by the tests)
"""

import argparse

from qlam_qiskit import CellConfig, resolve_backend
from qlam_qiskit.backends import generic_backend
from qlam_qiskit.reports import series, setting
from qlam_qiskit.reports.render import markdown

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="fewer, shorter lengths (for tests)")
args = parser.parse_args()
# Lengths T to report; lengths up to TRANSPILE_MAX are transpiled, longer ones extrapolated.
STEPS, TRANSPILE_MAX = ((1, 4, 8, 64), 8) if args.tiny else ((1, 4, 16, 64, 256, 784), 32)

cell = CellConfig(qubits=6)  # the default cell of `qlam-qiskit run`, 6 qubits wide
targets = [
    resolve_backend("fake_fez"),
    # basis gates, coupling spec, uniform calibration (errors, T1/T2, durations in seconds)
    generic_backend("cz,rz,sx,x", "ring:6", "1q=2e-4,2q=3e-3,readout=1e-2,t1=2e-4,t2=1.5e-4,"
                    "1q_time=3.2e-8,2q_time=6.8e-8,readout_time=1.5e-6"),
]

all_series = []
for backend in targets:
    for entanglement in ("ring", "coupling"):
        # setting(): fixes the layout ("coupling" -> a chain of coupled physical qubits);
        # series(): transpiles (optimization level 1) and fits the per-token cost.
        s = setting(backend, cell, entanglement, 1)
        se = series(s, STEPS, transpile_max=TRANSPILE_MAX, seed=0)
        all_series.append(se)
        p = se.per_token
        print(f"{backend.name} {entanglement}: {p['ops_2q']:.2f} 2q gates/token, "
              f"{p['swaps']:.2f} SWAPs/token, layout {se.layout}")

# The same Markdown the CLI prints and writes to report.md; it needs a short cell description.
about = {"qubits": cell.qubits, "depth": cell.depth, "entangler": cell.entangler,
         "encoding": cell.encoding}
print()
print(markdown(all_series, about))
