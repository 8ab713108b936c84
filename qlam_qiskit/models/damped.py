"""Damped QLAM layer: the memories are density matrices that relax, read by learned bases.

Per head h and token t (``circuits/damped.py`` is the circuit; the engine is
``backends/engine/damped_fused.py``'s generated kernel for memories of up to 2 qubits, else
``transfer.py``'s and ``selective.py``'s numba kernels):

    θ_t   = Δ_h (W x_t + b)                      the input map of QLAMLayer
    ρ_t   = A_γh( M(Δ_h w_h) E(θ_t) ρ_{t-1} E† M† )    cell, then amplitude damping per qubit
    y_t   = Tr(U_k† Z_S U_k ρ_t)                 the same K learned bases × Z terms
    out_t = V y_t

γ_{h,q} = 1 - exp(-exp(ν_{h,q})) with ν learned and initialised log-spaced over the memories
(``rate_min``..``rate_max`` per token): a slow memory keeps hundreds of tokens, a fast one a few.
With ``selective`` the rate is also the token's, ρ_t = exp(ν_{h,q} + (G x_t + g)_{h,q}) with G, g
starting at zero (``backends/engine/selective.py``): a token decides how much each memory forgets.
With the cell's encoding "ry_rz" the input block is RY(a_t) then RZ(b_t) on every qubit, so a
token also rotates the populations that damping relaxes towards |0⟩ (a write, not only a phase).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..backends.engine import EngineError, ReadoutEngine
from ..backends.engine import damped_fused
from ..backends.engine.compile import fixed_unitary_t
from ..backends.engine.damped_fused import damped_read
from ..backends.engine.fused_readout import query_axes
from ..backends.engine.product import product_form
from ..backends.engine.program import CircuitProgram, as_complex_dtype, real_dtype
from ..backends.engine.selective import rz_damped_scan, rz_damped_scan_ref
from ..backends.engine.transfer import (damping_transfer, observable_vectors, pauli_matrices,
                                        plus_state, rz_transfer_scan, rz_transfer_scan_ref,
                                        unitary_transfer)
from ..circuits.cell import CellConfig, CellTemplate, qlam_cell
from ..circuits.damped import damped_cell
from ..circuits.readout import qlam_readout

Tensor = torch.Tensor
MAX_QUBITS = 4
"""A damped memory of n qubits carries 4^n real numbers per sample: 256 at n = 4."""


class DampedQLAMLayer(nn.Module):
    """H damped quantum memories read by K learned bases at every token."""

    def __init__(self, d_in: int, d_out: int, *, heads: int = 1,
                 cell: CellConfig | CellTemplate = CellConfig(), queries: int = 2,
                 correlators: str = "pairs", mix_init: float = 1.0, input_scale: float = 1.0,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, rate_min: float = 1e-3,
                 rate_max: float = 1e-1, dtype: str = "complex64", gate: bool = False,
                 selective: bool = False) -> None:
        super().__init__()
        tpl = cell if isinstance(cell, CellTemplate) else qlam_cell(cell)
        n = tpl.num_qubits
        self.heads, self.cell_template = heads, tpl
        self.template = damped_cell(tpl)
        program = CircuitProgram(tpl.circuit, list(tpl.inputs), list(tpl.weights))
        self.product = product_form(program)
        self.ry = tpl.config is not None and tpl.config.encoding == "ry_rz"
        """Input block RY(a_t) RZ(b_t) per qubit (θ = (a, b)): a per-token channel."""
        if (self.product is None and not self.ry) or n > MAX_QUBITS:
            raise EngineError("memory='damped' needs a cell of at most "
                              f"{MAX_QUBITS} qubits with one-qubit diagonal input gates (encoding "
                              "'rz') or encoding 'ry_rz', and rzz or cz entanglers")
        self.mix_gates = program.segments[1].gates
        self.readout_template = qlam_readout(n, queries, correlators=correlators,
                                             pairs=tpl.entangling_pairs)
        self.cdtype = as_complex_dtype(dtype)
        self.measure = ReadoutEngine(self.readout_template, dtype=self.cdtype)
        m, p = len(tpl.inputs), len(tpl.weights)
        self.proj = nn.Linear(d_in, heads * m)
        nn.init.normal_(self.proj.weight, std=input_scale / math.sqrt(d_in))
        nn.init.uniform_(self.proj.bias, -input_scale, input_scale)
        self.mix = nn.Parameter(torch.empty(heads, p).uniform_(-mix_init, mix_init))  # (H, P)
        self.basis = nn.Parameter(torch.rand(heads, len(self.readout_template.weights))
                                  * 2 * math.pi)  # (H, 3nK)
        if not (0 < dt_min <= dt_max and 0 < rate_min <= rate_max):
            raise ValueError("memory='damped' needs 0 < dt_min <= dt_max and 0 < rate_min <= "
                             f"rate_max, got {dt_min}, {dt_max}, {rate_min}, {rate_max}")
        spread = lambda lo, hi: (torch.linspace(math.log(lo), math.log(hi), heads)  # noqa: E731
                                 if heads > 1 else torch.tensor([math.log(lo * hi) / 2]))
        self.log_dt = nn.Parameter(spread(dt_min, dt_max))  # (H,)
        self.log_rate = nn.Parameter(spread(rate_min, rate_max)[:, None].repeat(1, n))  # (H, n)
        for angle in (self.mix, self.basis, self.log_dt, self.log_rate):
            angle._optim = {"weight_decay": 0.0, "circuit": True}
        self.out = nn.Linear(heads * self.readout_template.num_outputs, d_out)
        self.gate = nn.Linear(d_in, d_out) if gate else None
        self.select = nn.Linear(d_in, heads * n) if selective else None  # x_t -> log-rate offsets
        if self.select is not None:  # starts as the non-selective memory
            nn.init.zeros_(self.select.weight), nn.init.zeros_(self.select.bias)
        real = real_dtype(self.cdtype)
        self.register_buffer("z", self.measure.term_signs.to(real),
                             persistent=False)  # (M, D) Z-term eigenvalues
        self.register_buffer("paulis", pauli_matrices(n, self.cdtype), persistent=False)
        self.register_buffer("r0", plus_state(n, real), persistent=False)  # |+>^n

    def gated(self, out: Tensor, x: Tensor) -> Tensor:
        """The readout map out (..., d_out) times the gate of its tokens x (..., d_in), if any."""
        return out if self.gate is None else out * torch.sigmoid(self.gate(x))

    def steps(self) -> Tensor:
        """Each memory's step Δ_h (H,)."""
        return torch.exp(self.log_dt)

    def folded_proj(self) -> tuple[Tensor, Tensor]:
        """The input projection with each memory's step folded in: Δ_h W (H, m, d_in), Δ_h b
        (H, m), so the angles are one linear map of x (no pass over (..., H, m) for the product
        or its gradient)."""
        dt = self.steps()[:, None]  # (H, 1)
        w = self.proj.weight.unflatten(0, (self.heads, -1)) * dt[..., None]
        return w, self.proj.bias.view(self.heads, -1) * dt

    def input_angles(self, x: Tensor) -> Tensor:
        """x (..., d_in) -> the cell's input angles θ (..., H, m) = Δ_h (W x + b)."""
        w, b = self.folded_proj()
        return nn.functional.linear(x, w.flatten(0, 1), b.flatten()).unflatten(-1, (self.heads, -1))

    def mixing(self) -> Tensor:
        """The cell's weight angles (H, P) = Δ_h w_h."""
        return self.mix * self.steps()[:, None]

    def rates(self) -> Tensor:
        """Damping rate per token (H, n) of every memory qubit: γ = 1 - exp(-rate) (with
        ``selective``, the base rate that each token's offset multiplies)."""
        return torch.exp(self.log_rate)

    def rate_map(self) -> tuple[Tensor, Tensor]:
        """Selective: the log-rates ν + G x + g as an affine map of a token: (H·n, d_in), (H·n,)
        (the kernels exponentiate them)."""
        return self.select.weight, self.select.bias + self.log_rate.flatten()

    def token_rates(self, x: Tensor) -> Tensor:
        """Selective: tokens x (..., d_in) -> each memory qubit's damping rate (..., H, n)."""
        log_rate = nn.functional.linear(x, *self.rate_map())  # ν + G x + g
        return torch.exp(log_rate).unflatten(-1, (self.heads, -1))

    def damping(self) -> Tensor:
        """Damping probability per token γ (H, n) of every memory qubit (what circuits bind)."""
        return -torch.expm1(-self.rates())

    def mixing_transfer(self) -> Tensor:
        """The mixing unitary's PTM R(M) (H, 4^n, 4^n)."""
        real = real_dtype(self.cdtype)
        mt = fixed_unitary_t(self.mix_gates, self.mixing().to(real), self.cell_template.num_qubits,
                             self.cdtype)  # (H, D, D) Mᵀ
        return unitary_transfer(mt.transpose(1, 2), self.paulis)

    def transfer(self) -> Tensor:
        """The fixed part of a token's update, S = A(γ) R(M), as a real PTM (H, 4^n, 4^n)."""
        return damping_transfer(self.rates().to(real_dtype(self.cdtype))) @ self.mixing_transfer()

    def observables(self) -> Tensor:
        """The readouts U_k† Z_S U_k as Pauli vectors (H, K, M, 4^n). Queries of one-qubit gates
        (every ``qlam_readout``) are products: ⊗_q of (0, n_q) on the term's qubits, n_q the
        Bloch axis of u_q† Z u_q, and (1, 0, 0, 0) elsewhere, built in a few ops (what a training
        step pays per layer, forward and backward: 1.0 ms, against 2.7 ms for
        ``observables_ref``'s D × D matrices, at the sMNIST preset's size)."""
        if not self.measure.product:
            return self.observables_ref()
        axes = query_axes(self.measure.qubit_rotations(self.basis))  # (H, K, n, 3)
        h, k, n, _ = axes.shape
        on = torch.cat([torch.zeros_like(axes[..., :1]), axes], -1)  # (H, K, n, 4): (0, n_q)
        off = torch.zeros_like(on)
        off[..., 0] = 1  # I on the qubits a term leaves out
        terms = self.readout_template.terms
        mask = torch.tensor([[q in t for q in range(n)] for t in terms])[:, :, None]  # (M, n, 1)
        f = torch.where(mask, on[:, :, None], off[:, :, None])  # (H, K, M, n, 4)
        o = f[..., 0, :]
        for q in range(1, n):  # kron(qubit q, lower qubits): q is the next digit up
            o = (f[..., q, :, None] * o[..., None, :]).flatten(-2)
        return o  # (H, K, M, 4^n)

    def observables_ref(self) -> Tensor:
        """``observables`` from the queries' D × D unitaries, for any query circuit."""
        u = self.measure.rotations_t(self.basis).transpose(-1, -2)  # (H, K, D, D)
        zu = self.z.to(u.dtype)[None, None, :, :, None] * u[:, :, None]  # Z_S U (H, K, M, D, D)
        return observable_vectors(u[:, :, None].conj().transpose(-1, -2) @ zu, self.paulis)

    def angle_maps(self) -> tuple[tuple[Tensor, Tensor] | None, tuple[Tensor, Tensor]]:
        """The RY angles (None without them) and the RZ angles δ as affine maps of a token, each
        (H·n, d_in), (H·n,), Δ folded in. RZ inputs: δ = (Δ_h (W x + b)) P + c is affine in x.
        "ry_rz" inputs: the cell's two input stages, each its own map, so both come out
        contiguous, as the kernels read them (slices of one map cost copies and a zero-filled
        gradient)."""
        w, b = self.folded_proj()  # (H, m, d_in), (H, m)
        if self.ry:
            n = self.cell_template.num_qubits
            stage = lambda k: (w[:, k * n:(k + 1) * n].flatten(0, 1),  # noqa: E731 - 0: RY, 1: RZ
                               b[:, k * n:(k + 1) * n].flatten())
            return stage(0), stage(1)
        p, c = self.product.relative_phases(self.mixing())  # (m, n), (H, n)
        w_eff = torch.einsum("hmd,mq->hqd", w, p.to(w.dtype))  # (H, n, d_in)
        b_eff = b @ p.to(w.dtype)  # (H, n)
        return None, (w_eff.flatten(0, 1), (b_eff + c.to(w.dtype)).flatten())

    def phases(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """Tokens x (..., d_in) -> (RY angles or None, RZ angles δ) (..., H, n) per qubit."""
        ry, rz = self.angle_maps()
        lin = lambda m: nn.functional.linear(x, *m).unflatten(-1, (self.heads, -1))  # noqa: E731
        return None if ry is None else lin(ry), lin(rz)

    def read(self, r: Tensor) -> Tensor:
        """States (..., H, N) -> readouts (..., H·K·M) in QLAMLayer's feature order (reference
        for ``readout_map``)."""
        y = torch.einsum("...hn,hkmn->...hkm", r, self.observables())
        return y.flatten(-3)

    def readout_map(self) -> tuple[Tensor, Tensor]:
        """The readouts and ``out`` as one linear map of the states: W (H·N, d_out), bias, so
        out_t = r_t W + bias with r_t (H·N,) all memories' Pauli vectors."""
        o = self.observables()  # (H, K, M, N)
        h, k, m, n_ = o.shape
        v = self.out.weight.view(-1, h, k, m).to(o.dtype)  # (d_out, H, K, M)
        return torch.einsum("hkmn,ohkm->hno", o, v).reshape(h * n_, -1), self.out.bias

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d_in) -> (B, T, d_out)."""
        real = real_dtype(self.cdtype)
        b, t, _ = x.shape
        w, bias = self.readout_map()
        if self.generated(x):  # the readout map inside the generated kernel's walk
            z, rate = self.lane_inputs(x)
            y = damped_read(self.r0, z, self.mixing_transfer(), w.to(real), bias.to(real),
                            ry=self.ry, rate=rate)  # (T, B, d_out)
            return self.gated(y.transpose(0, 1).to(self.out.weight.dtype), x)  # (B, T, d_out)
        r = self.states(x)  # (T, B, H, N)
        lanes = r.permute(2, 3, 0, 1)  # (H, N, T, B): the numba kernels' layout
        if lanes.is_contiguous():  # one GEMM on the kernel's array, then one transpose of the
            # (d_out, T·B) result, so the residual stream reads its features contiguous
            out = torch.addmm(bias.to(real)[:, None], w.T, lanes.reshape(-1, t * b)).T.contiguous()
        else:  # the reference's (T, B, H, N): one GEMM over the T·B rows
            out = torch.addmm(bias.to(real), r.reshape(t * b, -1), w)  # (T·B, d_out)
        out = out.view(t, b, -1).transpose(0, 1)  # (B, T, d_out), time-major underneath
        return self.gated(out.to(self.out.weight.dtype), x)

    def generated(self, x: Tensor) -> bool:
        """Whether forward() runs the generated kernel (``damped_fused``): on the CPU, for
        memories of up to its qubits."""
        return x.device.type == "cpu" and damped_fused.supports(self.cell_template.num_qubits)

    def lane_inputs(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """x (B, T, d_in) -> the generated kernel's stacked per-token inputs z (k, H, n, T, B):
        rows δ (RZ), log-rates ν + G x + g (selective; else the rates come broadcast, the second
        value), RY angles (encoding ry_rz). All are one GEMM over the T·B time-major tokens into
        the kernel's layout, and z's gradient comes back as one array for one GEMM back."""
        b, t, d = x.shape
        h, n = self.heads, self.cell_template.num_qubits
        real = real_dtype(self.cdtype)
        ry, rz = self.angle_maps()
        maps = [rz] + ([self.rate_map()] if self.select is not None else []) + \
            ([ry] if ry is not None else [])
        rate = None if self.select is not None else self.rates().to(real)[..., None, None]
        w_all, b_all = (torch.cat(v) for v in zip(*maps))  # (k·H·n, d_in), (k·H·n,)
        tokens = x.transpose(0, 1).reshape(t * b, d)  # (T·B, d_in), time-major: one copy
        z = torch.addmm(b_all[:, None], w_all, tokens.T)  # (k·H·n, T·B)
        return z.view(-1, h, n, t, b).to(real), rate

    def states(self, x: Tensor) -> Tensor:
        """x (B, T, d_in) -> every memory's Pauli vector after each token (T, B, H, N), by the
        numba kernels of transfer.py and selective.py (forward() on wider memories or off the
        CPU, and the references' layout)."""
        xt = x.transpose(0, 1).contiguous()  # (T, B, d_in), time-major: one copy, not one per map
        return self._scan(xt, self.r0, rz_transfer_scan, rz_damped_scan)

    def _scan(self, xt: Tensor, r0: Tensor, fixed, per_token) -> Tensor:
        """Tokens xt (T, B, d_in) and the state before them -> states (T, B, H, N): ``fixed``
        (transfer's scan, S = A R) when every token's channel is a phase block and fixed damping,
        else ``per_token`` (selective.py's)."""
        ry, rz = (None if a is None else a.to(r0.dtype) for a in self.phases(xt))  # (T, B, H, n)
        if self.select is None and ry is None:
            return fixed(r0, rz, self.transfer())
        rates = self.token_rates(xt) if self.select is not None else \
            self.rates().expand(*rz.shape[:2], -1, -1)  # (T, B, H, n)
        return per_token(r0, rz, rates.to(rz.dtype), self.mixing_transfer(), ry)

    def default_state(self, batch: int, device=None) -> Tensor:
        """The memories before the first token, |+>^n per head: Pauli vectors (B, H, 4^n)."""
        return self.r0.to(device).expand(batch, self.heads, -1).clone()

    def step(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Streaming: one token x_t (B, d_in) and the state (B, H, N) -> (out (B, d_out), next
        state). Equals forward() token by token."""
        x1 = x_t[None]  # (1, B, d_in)
        state = self._scan(x1, state, rz_transfer_scan_ref, rz_damped_scan_ref)[0]
        out = self.out(self.read(state).to(self.out.weight.dtype))  # (B, d_out)
        return self.gated(out, x_t), state
