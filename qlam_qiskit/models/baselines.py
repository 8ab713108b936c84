"""Classical baselines on the same contract as QLAMClassifier: x (B, T, C) -> logits (B, classes).

Each uses the same embedding, pre-norm residual stack with an MLP, mean pooling and head as the
QLAM classifier; only the sequence mixer differs, so comparisons isolate the memory itself:

* ``lstm`` / ``gru``: torch's recurrent layers.
* ``transformer``: causal self-attention with a learned position embedding.
* ``ssm``: a diagonal complex state-space layer in the S4D/LRU style (stable eigenvalues
  λ = exp(-exp(ν) + iθ), input and output projections), run as a linear recurrence.
* ``urnn``: the classical control for QLAM: the same complex state size 2^n per memory and a
  unitary recurrence (a learned unitary Uᵀ after a diagonal input phase, exactly QLAM's scan), but
  an ordinary linear readout of [Re ψ, Im ψ] instead of learned quantum measurements.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..backends.engine.scan import diag_unitary_scan
from .qlam import ModelConfig, QLAMClassifier

Tensor = torch.Tensor
BASELINES = ("lstm", "gru", "transformer", "ssm", "urnn")


class _RNNMixer(nn.Module):
    """LSTM or GRU over the sequence, width d."""

    def __init__(self, kind: str, d: int) -> None:
        super().__init__()
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(d, d, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(x)[0]  # (B, T, d)


class _AttentionMixer(nn.Module):
    """Causal multi-head self-attention, nn.MultiheadAttention's weights run through torch's
    fused causal attention (``scaled_dot_product_attention(is_causal=True)``): no T×T mask is
    built and the CPU flash kernel skips the masked half, 2.1× faster than the module's own
    call at T=784 (``reference`` keeps that call; the tests hold the two together)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        (b, t, d), h = x.shape, self.attn.num_heads
        qkv = F.linear(x, self.attn.in_proj_weight, self.attn.in_proj_bias)  # (B, T, 3d)
        q, k, v = qkv.view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)  # 3 × (B, h, T, d/h)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, T, d/h)
        return self.attn.out_proj(o.transpose(1, 2).reshape(b, t, d))  # (B, T, d)

    def reference(self, x: Tensor) -> Tensor:
        """forward() as nn.MultiheadAttention computes it, with an explicit causal mask."""
        t = x.shape[1]
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)  # True = hidden
        return self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]  # (B, T, d)


class _DiagonalSSM(nn.Module):
    """h_t = λ ⊙ h_{t-1} + B x_t, y_t = Re(C h_t): N complex modes per layer (S4D/LRU style)."""

    def __init__(self, d: int, n: int) -> None:
        super().__init__()
        self.log_rate = nn.Parameter(torch.log(torch.linspace(1e-3, 1e-1, n)))  # decay -exp(ν)
        self.freq = nn.Parameter(torch.linspace(0, math.pi, n))  # rotation θ
        self.b = nn.Linear(d, 2 * n)
        self.c = nn.Linear(2 * n, d)

    def forward(self, x: Tensor) -> Tensor:
        lam = torch.polar(torch.exp(-torch.exp(self.log_rate)), self.freq)  # (N,)
        u = torch.view_as_complex(self.b(x).unflatten(-1, (-1, 2)).contiguous())  # (B, T, N)
        h, out = torch.zeros_like(u[:, 0]), []
        for u_t in u.unbind(1):
            h = lam * h + u_t  # (B, N)
            out.append(h)
        hs = torch.stack(out, 1)  # (B, T, N)
        return self.c(torch.cat([hs.real, hs.imag], -1))  # (B, T, d)


class _UnitaryRNN(nn.Module):
    """H unitary memories of dimension 2^n with QLAM's recurrence and a linear readout."""

    def __init__(self, d: int, heads: int, qubits: int) -> None:
        super().__init__()
        self.heads, self.dim = heads, 2**qubits
        self.proj = nn.Linear(d, heads * self.dim)  # token -> phases per basis state
        nn.init.normal_(self.proj.weight, std=0.3 / math.sqrt(d))
        self.gen = nn.Parameter(0.1 * torch.randn(heads, self.dim, self.dim))  # U = exp(A - Aᴴ)
        self.out = nn.Linear(2 * heads * self.dim, d)

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        a = torch.complex(self.gen, self.gen.transpose(1, 2))  # (H, D, D)
        ut = torch.linalg.matrix_exp(a - a.mH).transpose(1, 2)  # Uᵀ, unitary
        phase = self.proj(x.transpose(0, 1)).view(t, b, self.heads, self.dim).transpose(1, 2)
        d = torch.polar(torch.ones_like(phase), phase)  # (T, H, B, D)
        psi0 = torch.full((self.heads, b, self.dim), self.dim ** -0.5, dtype=d.dtype,
                          device=x.device)
        states = diag_unitary_scan(psi0, d, ut)  # (T, H, B, D)
        feats = torch.cat([states.real, states.imag], -1)  # (T, H, B, 2D)
        return self.out(feats.permute(2, 0, 1, 3).reshape(b, t, -1))  # (B, T, d)


def attention_heads(d: int, head_dim: int, memories: int) -> int:
    """The transformer's head count at width ``d``: d / w for the smallest divisor w of d with
    w >= head_dim (heads of width 16 and more, as usual; CPU attention kernels slow down sharply
    at narrower heads, benchmarks/RESULTS.md); head_dim 0: gcd(d, memories), the old split."""
    if head_dim <= 0:
        return max(1, math.gcd(d, memories))
    return d // next((w for w in range(min(head_dim, d), d + 1) if d % w == 0), d)


def _mixer(kind: str, cfg: ModelConfig) -> nn.Module:
    """The sequence mixer of baseline ``kind``, width d_model."""
    d = cfg.d_model
    if kind in ("lstm", "gru"):
        return _RNNMixer(kind, d)
    if kind == "transformer":
        return _AttentionMixer(d, attention_heads(d, cfg.attn_head_dim, cfg.heads))
    if kind == "ssm":
        return _DiagonalSSM(d, cfg.heads * 2**cfg.qubits)
    return _UnitaryRNN(d, cfg.heads, cfg.qubits)


class BaselineClassifier(QLAMClassifier):
    """QLAMClassifier's frame (embedding, residual blocks, pooling, head) with a classical mixer."""

    def __init__(self, kind: str, cfg: ModelConfig) -> None:
        if kind not in BASELINES:
            raise ValueError(f"unknown model {kind!r}; choose qlam or one of {BASELINES}")
        super().__init__(cfg, mixer=lambda: _mixer(kind, cfg))
        self.kind = kind
