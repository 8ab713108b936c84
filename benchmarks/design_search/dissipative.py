"""Prototype: a dissipative QLAM memory. n system qubits, per token
rho <- Deph_kappa( M(w) E(theta_t) rho E^dag M^dag ), read by learned bases Tr(U^dag Z_S U rho).
vec(rho) (D^2 complex) runs the linear scan v <- (v * d_t) @ S^T with S = Deph (M kron conj M)."""
import math
import torch
from torch import nn
from qlam_qiskit.backends.engine.scan import diag_unitary_scan
from qlam_qiskit.backends.engine.compile import fixed_unitary_t, compile_gates
from qlam_qiskit.circuits.cell import CellConfig, qlam_cell
from qlam_qiskit.circuits.readout import qlam_readout
from qlam_qiskit.backends.engine.program import CircuitProgram


class DissipativeMixer(nn.Module):
    def __init__(self, d, heads=16, qubits=2, queries=2, input_scale=0.3, mix_init=0.5,
                 rate_min=1e-3, rate_max=1e-1, dtype=torch.complex64, zero_bias=False, channel="deph",
                 dt_min=0.0, dt_max=0.0):
        super().__init__()
        n, D = qubits, 2 ** qubits
        self.h, self.n, self.D, self.cdt, self.channel = heads, n, D, dtype, channel
        cell = qlam_cell(CellConfig(qubits=n, entangler="rzz"))
        prog = CircuitProgram(cell.circuit, list(cell.inputs), list(cell.weights))
        assert prog.kinds == ["diag", "fixed"], prog.kinds
        self.mix_gates = prog.segments[1].gates
        self.proj = nn.Linear(d, heads * n)
        nn.init.normal_(self.proj.weight, std=input_scale / math.sqrt(d))
        if dt_max > 0:  # time scales as QLAMLayer's: angles times a log-spaced step per head
            nn.init.uniform_(self.proj.bias, -input_scale, input_scale)
            self.log_dt = nn.Parameter(torch.linspace(math.log(dt_min), math.log(dt_max), heads))
            self.log_dt._optim = {"weight_decay": 0.0, "circuit": True}
        elif zero_bias:
            nn.init.zeros_(self.proj.bias)
        else:
            nn.init.uniform_(self.proj.bias, -math.pi, math.pi)
        self.mix = nn.Parameter(torch.empty(heads, len(cell.weights)).uniform_(-mix_init, mix_init))
        # per head, per qubit dephasing: coherence factor kappa = exp(-exp(nu)), rates log-spread
        rates = torch.exp(torch.linspace(math.log(rate_min), math.log(rate_max), heads))
        self.log_rate = nn.Parameter(torch.log(rates)[:, None].repeat(1, n))  # (H, n)
        ro = qlam_readout(n, queries, correlators="pairs", pairs=cell.config.entangling_pairs)
        self.ro = ro
        self.qgates = [compile_gates(qc, (), list(ro.weights)) for qc in ro.circuits]
        self.basis = nn.Parameter(torch.rand(heads, len(ro.weights)) * 2 * math.pi)
        for p in (self.mix, self.basis, self.log_rate):
            p._optim = {"weight_decay": 0.0, "circuit": True}
        self.out = nn.Linear(heads * ro.num_outputs, d)
        idx = torch.arange(D)
        bits = (idx[:, None] >> torch.arange(n)) & 1  # (D, n)
        self.register_buffer("sign", (2 * bits - 1).float(), persistent=False)  # RZ: -1/2, +1/2
        diff = (bits[:, None, :] != bits[None, :, :]).float()  # (D, D, n)
        self.register_buffer("diff", diff.reshape(D * D, n), persistent=False)
        z = torch.stack([(1 - 2 * bits[:, list(s)]).prod(-1) for s in ro.terms], -1).float()
        self.register_buffer("z", z, persistent=False)  # (D, M)

    def superop_t(self):
        """S^T (H, D^2, D^2) with S = Deph (M kron conj M) acting on row-major vec(rho)."""
        rd = torch.float64 if self.cdt == torch.complex128 else torch.float32
        mix = self.mix if not hasattr(self, "log_dt") else self.mix * torch.exp(self.log_dt)[:, None]
        mt = fixed_unitary_t(self.mix_gates, mix.to(rd), self.n, self.cdt)  # (H, D, D) M^T
        m = mt.transpose(1, 2)
        s = torch.einsum("hik,hjl->hijkl", m, m.conj()).reshape(self.h, self.D ** 2, self.D ** 2)
        if self.channel == "damp":
            g = 1 - torch.exp(-torch.exp(self.log_rate.to(rd)))  # (H, n) damping probability
            a = self.damping(g).to(self.cdt)  # (H, D^2, D^2)
            return (a @ s).transpose(1, 2)
        kappa = torch.exp(-torch.exp(self.log_rate.to(rd)))  # (H, n)
        deph = torch.exp(self.diff @ torch.log(kappa).T).T  # (H, D^2): prod_q kappa^[bits differ]
        s = deph.to(self.cdt)[:, :, None] * s
        return s.transpose(1, 2)

    def damping(self, g):
        """Amplitude damping superoperator (H, D^2, D^2) on row-major vec(rho), rate g (H, n)."""
        h, n, D = self.h, self.n, self.D
        out = torch.eye(D * D, dtype=g.dtype, device=g.device).expand(h, -1, -1)
        for q in range(n):
            z, o = torch.zeros_like(g[:, q]), torch.ones_like(g[:, q])
            r = torch.sqrt(1 - g[:, q])
            # on (rho00, rho01, rho10, rho11) of qubit q: rho00 += g rho11, coherences * sqrt(1-g)
            aq = torch.stack([torch.stack([o, z, z, g[:, q]], -1), torch.stack([z, r, z, z], -1),
                              torch.stack([z, z, r, z], -1), torch.stack([z, z, z, 1 - g[:, q]], -1)], -2)
            # embed: vec index (i, j), i,j in [0, D); qubit q bit of i (row) and j (col)
            t = torch.zeros(h, D, D, D, D, dtype=g.dtype, device=g.device)
            idx = torch.arange(D)
            for i in range(D):
                for j in range(D):
                    bi, bj = (i >> q) & 1, (j >> q) & 1
                    for ci in (0, 1):
                        for cj in (0, 1):
                            i2 = (i & ~(1 << q)) | (ci << q)
                            j2 = (j & ~(1 << q)) | (cj << q)
                            t[:, i2, j2, i, j] = aq[:, 2 * ci + cj, 2 * bi + bj]
            out = t.reshape(h, D * D, D * D) @ out
        return out

    def observables(self):
        """vec(O^T) (H, K*M, D^2) for O = U_k^dag Z_S U_k."""
        rd = torch.float64 if self.cdt == torch.complex128 else torch.float32
        obs = []
        for gates in self.qgates:
            ut = fixed_unitary_t(gates, self.basis.to(rd), self.n, self.cdt)  # (H, D, D) U^T
            u = ut.transpose(1, 2)
            for m in range(self.z.shape[1]):
                zz = torch.diag_embed(self.z[:, m].to(self.cdt))  # (D, D)
                o = u.conj().transpose(1, 2) @ zz @ u  # (H, D, D)
                obs.append(o.transpose(1, 2).reshape(self.h, -1))
        return torch.stack(obs, 1)

    def forward(self, x):
        b, t, _ = x.shape
        rd = torch.float64 if self.cdt == torch.complex128 else torch.float32
        th = self.proj(x.transpose(0, 1)).view(t, b, self.h, self.n).transpose(1, 2).to(rd)  # (T,H,B,n)
        if hasattr(self, "log_dt"):
            th = th * torch.exp(self.log_dt).to(rd)[None, :, None, None]
        phi = 0.5 * th @ self.sign.to(rd).T  # (T, H, B, D)
        dphi = phi[..., :, None] - phi[..., None, :]  # (T, H, B, D, D)
        d = torch.polar(torch.ones_like(dphi), dphi).reshape(t, self.h, b, -1)  # (T,H,B,D^2)
        plus = torch.full((self.D, self.D), 1.0 / self.D, dtype=self.cdt, device=x.device)
        v0 = plus.reshape(1, 1, -1).expand(self.h, b, -1).contiguous()
        v = diag_unitary_scan(v0, d, self.superop_t())  # (T, H, B, D^2)
        y = torch.einsum("thbv,hkv->thbk", v, self.observables()).real  # (T, H, B, K*M)
        return self.out(y.permute(2, 0, 1, 3).reshape(b, t, -1).to(self.out.weight.dtype))
