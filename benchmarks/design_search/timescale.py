"""Prototype: a QLAM layer whose memories run on spread time scales, as an SSM's channels do.

Every angle of memory h's cell (input phases and mixing) is multiplied by a step Δ_h, log-spread
over [dt_min, dt_max] across the memories and learned as log Δ_h:
    |ψ_t> = M(Δ_h w_h) E(Δ_h (W_h x_t + b_h)) |ψ_{t-1}>
i.e. a Trotter step of length Δ_h of exp(-i (H_mix + H_in(x_t))). A slow memory (Δ ~ 1/T) turns
by O(1) over the whole sequence and its readouts are smooth in the inputs; a fast one follows the
last few tokens. The circuit is the preset's; only its angles are reparameterised (affine in x_t
per token, so the primitives path runs it unchanged with the effective weights)."""
import math

import torch
from torch import nn

from qlam_qiskit.models.qlam import QLAMLayer


class TimescaleQLAM(QLAMLayer):
    def __init__(self, d: int, *, dt_min: float = 1e-3, dt_max: float = 1e-1, learn_dt: bool = True,
                 w_scale: float = 1.0, mix_scale: float = 1.0, bias_scale: float = 1.0, **kw) -> None:
        super().__init__(d, d, **kw)
        h = self.heads
        log_dt = torch.linspace(math.log(dt_min), math.log(dt_max), h)  # (H,)
        if learn_dt:
            self.log_dt = nn.Parameter(log_dt)
            self.log_dt._optim = {"weight_decay": 0.0, "circuit": True}
        else:
            self.register_buffer("log_dt", log_dt)
        nn.init.normal_(self.proj.weight, std=w_scale / math.sqrt(d))  # rates in units of 1/Δ
        nn.init.uniform_(self.proj.bias, -bias_scale, bias_scale)
        with torch.no_grad():
            self.mix.uniform_(-mix_scale, mix_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (b, t, d), h = x.shape, self.heads
        dt = torch.exp(self.log_dt)  # (H,)
        mix = self.mix * dt[:, None]  # (H, P) effective mixing angles
        p, c = self.engine.relative_phases(mix)  # (m, n), (H, n)
        p, c = p.to(self.proj.weight.dtype), c.to(self.proj.weight.dtype)
        w = self.proj.weight.view(h, -1, d) * dt[:, None, None]  # (H, m, d) effective input map
        bias = self.proj.bias.view(h, -1) * dt[:, None]  # (H, m)
        w_in = torch.einsum("jq,hjd->hqd", p, w)  # (H, n, d)
        b_in = torch.einsum("jq,hj->hq", p, bias) + c  # (H, n)
        tokens = x.transpose(0, 1).reshape(t * b, d)  # (T·B, d)
        delta = torch.addmm(b_in.reshape(-1, 1), w_in.reshape(-1, d), tokens.T)  # (H·n, T·B)
        ev = self.engine.read(delta.view(h, -1, t, b), mix, self.measure, self.basis)  # (H,K,M,T,B)
        ev = ev.reshape(-1, t * b).to(self.out.weight.dtype)  # (H·K·M, T·B)
        out = torch.addmm(self.out.bias, ev.T, self.out.weight.T)  # (T·B, d_out)
        return out.view(t, b, -1).transpose(0, 1)  # (B, T, d_out)
