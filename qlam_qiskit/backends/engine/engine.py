"""Exact, batched, differentiable statevector engine for QLAM templates (torch, CPU or CUDA).

Built from the Qiskit cell template, run by one of the kernels of ``KERNELS`` (the one table of
how a cell can be scanned over a sequence). H independent memories (heads) run side by side.
Tensors are time-major: inputs θ (T, H, B, m), states (T, H, B, D), so every per-token slice is
contiguous."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from qiskit.circuit import QuantumCircuit

from ...circuits.cell import CellTemplate
from ...errors import EngineError
from . import fused_readout, gpu, kernels
from .adjoint import adjoint_scan
from .compile import compile_gates
from .gates import apply_matrix, gate_matrix
from .product import product_form, product_scan_ref
from .program import CircuitProgram, as_complex_dtype, real_dtype, unbind_time
from .readout import ReadoutEngine
from .scan import diag_unitary_scan

Tensor = torch.Tensor
Scan = Callable[["SequenceEngine", Tensor, Tensor, Tensor, bool], Tensor]
"""(engine, ψ0 (H, B, D), θ (T, H, B, m), w (H, P), all_states) -> (T, H, B, D) or (H, B, D)."""


def _fused(eng: SequenceEngine, psi: Tensor, theta: Tensor, w: Tensor, all_states: bool) -> Tensor:
    """The numba kernel on the cell's product form."""
    ins = eng.product.inputs(w)  # A (G, m), o (H, G), qubits (G,), phases (G, 2)
    u, e = eng.product.unitaries(w, eng.dtype)  # (H, L, n, 2, 2), (H, L, D)
    return kernels.product_scan(psi, theta, *ins, u, e, all_states=all_states,
                                anchor_every=eng.anchor_every)


def _product(eng: SequenceEngine, psi: Tensor, theta: Tensor, w: Tensor,
             all_states: bool) -> Tensor:
    """The product form gate by gate in torch autograd."""
    ins = eng.product.inputs(w)  # A (G, m), o (H, G), qubits (G,), phases (G, 2)
    u, e = eng.product.unitaries(w, eng.dtype)  # (H, L, n, 2, 2), (H, L, D)
    return product_scan_ref(psi, theta, *ins, u, e, all_states=all_states)


def _dense(eng: SequenceEngine, psi: Tensor, theta: Tensor, w: Tensor, all_states: bool) -> Tensor:
    """Per token: phases d_t, then the fused mixing unitary (one batched matmul)."""
    d, mt = eng.cell.prepare(theta, w, eng.dtype)  # (T, H, B, D), (H, D, D)
    states = diag_unitary_scan(psi, d, mt)  # (T, H, B, D)
    return states if all_states else states[-1]


def _dense_adjoint(eng: SequenceEngine, psi: Tensor, theta: Tensor, w: Tensor,
                   all_states: bool) -> Tensor:
    """Dense; a last-state run backpropagates by unitary adjoint instead of stored states."""
    if all_states:
        return _dense(eng, psi, theta, w, all_states)
    a_in, off, pattern, mt = eng.cell.diag_fixed_parts(w, eng.dtype)
    return adjoint_scan(psi, theta, a_in, off, pattern, mt, anchor_every=eng.anchor_every)


def _steps(eng: SequenceEngine, psi: Tensor, theta: Tensor, w: Tensor, all_states: bool) -> Tensor:
    """Segment by segment (fixed blocks fused, diagonal runs as phases, other gates one by one)."""
    sliced = unbind_time(eng.cell.prepare(theta, w, eng.dtype), eng.cell.kinds)
    states = []
    for k in range(theta.shape[0]):
        psi = eng.cell.step(psi, sliced, k)  # (H, B, D)
        if all_states:
            states.append(psi)
    return torch.stack(states) if all_states else psi


@dataclass(frozen=True)
class Kernel:
    """One way to run a cell over a sequence: a row of ``KERNELS``."""

    name: str
    about: str
    devices: tuple[str, ...] | None
    """torch device types it runs on; None: any."""
    cells: str
    """Cells it runs: "product" (product form, else refused), "diag-fixed" (a diagonal input
    block then a fixed block; other cells run as ``steps``), "any"."""
    memory: str
    """What backward keeps."""
    scan: Scan | None
    """The scan; None for ``auto``, which picks another row."""


KERNELS: dict[str, Kernel] = {k.name: k for k in (
    Kernel("auto", "fused on CPU when the cell has a product form and numba is installed; "
           "fused-gpu on CUDA when numba-cuda runs there; product for 12+ qubits elsewhere; dense "
           "otherwise; steps for cells that are not (diag, fixed)", None, "any",
           "that of the kernel picked", None),
    Kernel("fused", "numba kernel on the cell's product form: O(n·2^n) per token, backward by "
           "unitary adjoint", ("cpu",), "product",
           "last-state runs: independent of T; all-states runs: the T states", _fused),
    Kernel("fused-gpu", "numba-cuda kernel on the cell's product form: one launch per pass, "
           "2^n amplitudes in shared memory, backward by unitary adjoint (backends/engine/gpu)",
           ("cpu",) if gpu.simulating() else ("cuda",), "product",
           "last-state runs: independent of T; all-states runs: the T states", gpu.fused_gpu_scan),
    Kernel("dense", "mixing fused into one 2^n×2^n unitary: one elementwise product and one "
           "batched matmul per token (the GPU path)", None, "diag-fixed", "the T states", _dense),
    Kernel("dense-adjoint", "dense; last-state runs backpropagate by unitary adjoint", None,
           "diag-fixed", "last-state runs: independent of T; all-states runs: the T states",
           _dense_adjoint),
    Kernel("product", "the product form gate by gate in torch autograd (wide memories, any "
           "device)", None, "product", "every gate's output per token", _product),
    Kernel("steps", "segment by segment: fixed blocks fused, diagonal runs as phases, other "
           "gates one by one (any cell)", None, "any", "every segment's output per token",
           _steps),
)}
"""The kernels by name: ``SequenceEngine(kernel=...)``, ``--kernel`` choices."""


class SequenceEngine:
    """Runs init + cell^T over batches of per-token angles, for H memories at once.

    ``kernel`` names a row of ``KERNELS``: how the cell is scanned (default ``"auto"``).
    """

    def __init__(self, cell: CellTemplate, init: QuantumCircuit | None = None, *,
                 dtype: str | torch.dtype = "complex64", anchor_every: int = 0,
                 kernel: str = "auto") -> None:
        self.dtype = as_complex_dtype(dtype)
        self.anchor_every = anchor_every
        """Adjoint walks: keep every k-th state to bound round-off drift (0: none)."""
        if kernel not in KERNELS:
            raise EngineError(f"kernel must be one of {list(KERNELS)}, got {kernel!r}")
        self.cell = CircuitProgram(cell.circuit, list(cell.inputs), list(cell.weights))
        self.product = product_form(self.cell)
        if KERNELS[kernel].cells == "product" and self.product is None:
            raise EngineError(f"kernel={kernel!r} needs a cell in product form (diagonal one-qubit "
                              "input gates; one-qubit and diagonal mixing gates, e.g. cz or rzz "
                              "entanglers); use kernel='dense'")
        if kernel == "fused" and not kernels.available():
            raise EngineError("kernel='fused' needs numba: pip install numba")
        self.kernel = kernel
        self.init_gates = compile_gates(init, (), ()) if init is not None else []
        self.num_qubits = cell.circuit.num_qubits

    def kernel_for(self, device: torch.device) -> str:
        """The kernel a run on ``device`` uses: a name in ``KERNELS`` other than auto."""
        spec = KERNELS[self.kernel]
        if spec.cells != "any" and self.cell.kinds != ["diag", "fixed"]:
            return "steps"
        if spec.devices is not None and device.type not in spec.devices:
            raise EngineError(f"kernel={self.kernel!r} runs on {', '.join(spec.devices)}; on "
                              f"{device.type} use kernel='dense' (or 'product' for wide memories)")
        if self.kernel == "fused-gpu" and gpu.problem(device):
            raise EngineError(f"kernel='fused-gpu': {gpu.problem(device)}")
        if self.kernel != "auto":
            return self.kernel
        if self.cell.kinds != ["diag", "fixed"]:
            return "steps"
        if self.product is None:
            return "dense"
        if device.type == "cpu" and kernels.available():
            return "fused"
        if device.type == "cuda" and gpu.available(device):
            return "fused-gpu"
        return "product" if self.num_qubits >= 12 else "dense"

    def initial_state(self, heads: int, batch: int, device=None) -> Tensor:
        """|0…0⟩ pushed through the init block gate by gate (no 2^n×2^n matrix): (H, B, D)."""
        psi = torch.zeros(1, 2**self.num_qubits, dtype=self.dtype, device=device)
        psi[:, 0] = 1
        real = real_dtype(self.dtype)
        for g in self.init_gates:  # constant angles only
            ang = tuple(torch.tensor(c, dtype=real, device=device) for c in g.c)
            psi = apply_matrix(psi, gate_matrix(g.name, ang, dtype=self.dtype, device=device),
                               g.qubits, self.num_qubits)
        return psi.expand(heads * batch, -1).reshape(heads, batch, -1).clone()

    def run(self, theta: Tensor, w: Tensor, psi0: Tensor | None = None, *,
            all_states: bool = True) -> Tensor:
        """θ (T, H, B, m), w (H, P) -> states after each token (T, H, B, D), or the last (H, B, D)."""
        if theta.dim() != 4 or theta.shape[-1] != self.cell.num_inputs \
                or w.shape != (theta.shape[1], self.cell.num_weights):
            raise EngineError(f"expected θ (T, H, B, {self.cell.num_inputs}) and w "
                              f"(H, {self.cell.num_weights}), got {tuple(theta.shape)} and "
                              f"{tuple(w.shape)}")
        t, h, b, _ = theta.shape
        real = real_dtype(self.dtype)
        theta, w = theta.to(real), w.to(real)
        psi = self.initial_state(h, b, theta.device) if psi0 is None else psi0.to(self.dtype)
        return KERNELS[self.kernel_for(theta.device)].scan(self, psi, theta, w, all_states)

    def reads_fused(self, device: torch.device, readout: ReadoutEngine) -> bool:
        """Whether ``read`` runs here: the fused kernel on this device, queries made of one-qubit
        gates, and a memory and Z terms the fused readout is built for."""
        return (self.kernel_for(device) == "fused" and readout.product
                and fused_readout.supports(self.num_qubits, readout.template.terms))

    def relative_phases(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """The input block as relative phases affine in a token's inputs θ (m,): δ = θ P + c[h]
        for P (m, n) and c (H, n), weights w (H, P); what ``read`` takes, so a caller can fold P
        into its own input map. Needs a product form."""
        return self.product.relative_phases(w.to(real_dtype(self.dtype)))

    def read(self, delta: Tensor, w: Tensor, readout: ReadoutEngine, r: Tensor,
             psi0: Tensor | None = None) -> Tensor:
        """The memories read at every token inside the fused scan (``fused_readout.py``):
        relative input phases δ (H, n, T, B) (``relative_phases``), w (H, P), readout weights
        r (H, 3nK) -> readouts (H, K, M, T, B), real. Equals ``readout`` of
        ``run(θ, w, all_states=True)`` with the axes moved, but keeps no (T, H, B, D) states.
        Needs ``reads_fused``."""
        h, n, t, b = delta.shape
        if n != self.num_qubits or w.shape != (h, self.cell.num_weights):
            raise EngineError(f"expected δ (H, {self.num_qubits}, T, B) and w "
                              f"(H, {self.cell.num_weights}), got {tuple(delta.shape)} and "
                              f"{tuple(w.shape)}")
        if not self.reads_fused(delta.device, readout):
            raise EngineError("read() needs the fused kernel (CPU, a product-form cell of at most "
                              f"{fused_readout.MAX_QUBITS} qubits), queries of one-qubit gates and "
                              "Z terms of one or two qubits")
        real = real_dtype(self.dtype)
        u, e = self.product.unitaries(w.to(real), self.dtype)  # (H, L, n, 2, 2), (H, L, D)
        psi = self.initial_state(h, b, delta.device) if psi0 is None else psi0.to(self.dtype)
        return fused_readout.product_readout(psi, delta, u, e, readout.qubit_rotations(r),
                                             readout.template.terms)

    def step(self, theta_t: Tensor, w: Tensor, psi: Tensor) -> Tensor:
        """One token for streaming: θ_t (H, B, m), w (H, P), ψ (H, B, D) -> next ψ (H, B, D)."""
        return self.run(theta_t.unsqueeze(0), w, psi, all_states=False)
