"""Learned-basis readout: expectation values of K query rotations and their Z terms, batched."""

from __future__ import annotations

import numpy as np
import torch

from ...circuits.readout import ReadoutTemplate
from ...errors import EngineError
from .compile import fixed_unitary_t, gate_angles
from .gates import apply_matrix, gate_matrix
from .product import one_qubit_products
from .program import CircuitProgram, as_complex_dtype, real_dtype

Tensor = torch.Tensor


class ReadoutEngine:
    """Expectations of K learned-basis queries: ⟨ψ| U_k† Z_S U_k |ψ⟩ for every Z term S.

    Up to 9 qubits: in real arithmetic, as plain float GEMMs: [Re ψ, Im ψ] times the real form
    of all K rotations at once, squared, then one matmul with the ±1 sign table of the terms.
    From 10 qubits (or ``gatewise=True``) each query's one-qubit rotations are applied gate by
    gate instead, so no 2^n×2^n rotation is built.
    """

    def __init__(self, template: ReadoutTemplate, *, dtype: str | torch.dtype = "complex64",
                 gatewise: bool | None = None) -> None:
        self.dtype = as_complex_dtype(dtype)
        self.template = template
        w = list(template.weights)
        self.queries = [CircuitProgram(qc, (), w) for qc in template.circuits]
        n = template.circuits[0].num_qubits
        self.gatewise = n >= 10 if gatewise is None else gatewise
        """Apply query rotations gate by gate (wide memories) instead of as dense matrices."""
        idx = np.arange(2**n)
        signs = 1 - 2 * ((idx[:, None] >> np.arange(n)[None, :]) & 1)  # (D, n): ±1 per Z_q
        zmat = np.stack([signs[:, list(t)].prod(axis=1) for t in template.terms], axis=1)
        self._z = torch.as_tensor(zmat, dtype=torch.float64)  # (D, M)
        self.term_signs = self._z.T.contiguous()
        """(M, D) float64: eigenvalue ±1 of each Z term on each basis state."""
        self.product = all(len(q.segments) == 1 and all(len(g.qubits) == 1
                                                        for g in q.segments[0].gates)
                           for q in self.queries)
        """Every query is one-qubit gates only: ``qubit_rotations`` exists and the fused kernel
        can read the memories inside its scan (``SequenceEngine.read``)."""
        if not self.gatewise:  # (K*2D, K*M): |amp|² (re and im rows) of query k -> its M terms
            z2 = np.kron(np.eye(template.num_queries), np.repeat(zmat, 2, axis=0))
            self._z2 = torch.as_tensor(z2, dtype=torch.float64)

    def rotations_t(self, r: Tensor) -> Tensor:
        """Transposed query unitaries (H, K, D, D) for readout weights r (H, 3nK)."""
        r = r.to(real_dtype(self.dtype))
        return torch.stack([fixed_unitary_t(q.segments[0].gates, r, q.num_qubits, self.dtype)
                            for q in self.queries], dim=1)

    def qubit_rotations(self, r: Tensor) -> Tensor:
        """Each query as one 2×2 rotation per qubit (its gates on that qubit multiplied in
        order), for readout weights r (H, 3nK): (H, K, n, 2, 2) complex. Needs ``product``."""
        if not self.product:
            raise EngineError("qubit_rotations needs queries made of one-qubit gates only")
        r = r.to(real_dtype(self.dtype))
        n = self.queries[0].num_qubits
        slots = [[g for g in q.segments[0].gates if g.qubits[0] == j] for q in self.queries
                 for j in range(n)]  # (query, qubit) slots
        u = one_qubit_products(slots, r, self.dtype)  # (H, K·n, 2, 2)
        return u.view(r.shape[0], len(self.queries), n, 2, 2)

    def __call__(self, states: Tensor, r: Tensor) -> Tensor:
        """States (..., H, B, D) and weights r (H, 3nK) -> expectations (..., H, B, K, M), real."""
        if self.gatewise:
            return self._gatewise(states, r)
        h, b, d = states.shape[-3:]
        lead = states.shape[:-3]
        rot = self.rotations_t(r)  # (H, K, D, D) complex, amp_k = ψ @ rot[k]
        k = rot.shape[1]
        # real form: [re ψ_j, im ψ_j] interleaved rows -> [re a_i, im a_i] interleaved columns
        c, s = rot.real, rot.imag  # (H, K, D, D)
        blk = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (H,K,D,D,2,2)
        rr = blk.permute(0, 2, 4, 1, 3, 5).reshape(h, 2 * d, k * 2 * d)  # (H, 2D, K*2D)
        x = torch.view_as_real(states.to(self.dtype))  # (..., H, B, D, 2)
        x = x.reshape(-1, h, b, 2 * d).transpose(0, 1).reshape(h, -1, 2 * d)  # (H, N, 2D)
        amp = torch.bmm(x, rr)  # (H, N, K*2D)
        ev = (amp * amp) @ self._z2.to(device=amp.device, dtype=amp.dtype)  # (H, N, K*M)
        ev = ev.reshape(h, -1, b, k, ev.shape[-1] // k).transpose(0, 1)  # (L, H, B, K, M)
        return ev.reshape(lead + (h, b, k, ev.shape[-1]))

    def _gatewise(self, states: Tensor, r: Tensor) -> Tensor:
        """Same expectations, each query's U gates applied one qubit at a time."""
        h, b, d = states.shape[-3:]
        lead = states.shape[:-3]
        n = d.bit_length() - 1
        r = r.to(real_dtype(self.dtype))
        x = states.to(self.dtype).reshape(-1, h, b, d)  # (L, H, B, D)
        z = self._z.to(device=x.device, dtype=r.dtype)
        out = []
        for q in self.queries:
            amp = x.reshape(-1, d)  # (L*H*B, D), head-major inside each leading index
            for g in q.segments[0].gates:
                mat = gate_matrix(g.name, gate_angles(g, None, r), dtype=self.dtype,
                                  device=x.device)  # (H, 2, 2)
                mat = mat[None, :, None].expand(x.shape[0], h, b, 2, 2).reshape(-1, 2, 2)
                amp = apply_matrix(amp, mat, g.qubits, n)
            out.append((amp.real ** 2 + amp.imag ** 2) @ z)  # (L*H*B, M)
        ev = torch.stack(out, -2)  # (L*H*B, K, M)
        return ev.reshape(lead + (h, b) + ev.shape[-2:])
