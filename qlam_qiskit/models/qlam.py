"""QLAM layer and classifier: tokens -> angles -> quantum memories -> learned-basis readouts.

The recurrence, per head h and token t (all heads and samples batched in the engine):

    θ_t   = Δ_h (W x_t + b)                 classical affine map to RZ angles, times a step Δ_h
    |ψ_t> = M(Δ_h w_h) E(θ_t) |ψ_{t-1}>      QLAM cell (circuits/cell.py), |ψ_0> = |+>^n
    y_t   = ⟨ψ_t| U_k† Z_S U_k |ψ_t⟩         K learned bases × Z terms (circuits/readout.py)
    out_t = V y_t                           linear map of all heads' readouts

Every angle of memory h is a Trotter step of length Δ_h of exp(-i(H_mix + H_in(x_t))), with
log Δ_h learned and initialised log-spaced across the memories (``dt_min``..``dt_max``), as an
SSM initialises its channels' steps: a slow memory turns by O(1) over the whole sequence, a fast
one follows the last few tokens. Without it (dt_max 0) every memory turns by about the same angle
per token and, at T = 784, is scrambled long before the end (benchmarks/design_search).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch
from torch import nn

from ..backends.engine import ReadoutEngine, SequenceEngine
from ..circuits.cell import CellConfig, CellTemplate, init_circuit, qlam_cell
from ..circuits.readout import qlam_readout
from .damped import DampedQLAMLayer

Tensor = torch.Tensor
POOLS = ("mean", "last")
MEMORIES = ("pure", "damped")
"""What a QLAM memory is: a statevector (unitary cell) or a density matrix (damped cell)."""
"""How a classifier summarises the sequence: mean over tokens, or the last token."""


@dataclass
class ModelConfig:
    """Architecture of a QLAM classifier; ``asdict`` of it is stored in every checkpoint."""

    d_input: int = 1
    """Channels per token (1 for grayscale pixels, 3 for RGB). Default: 1."""
    num_classes: int = 10
    """Output classes. Default: 10."""
    d_model: int = 32
    """Width of the residual stream between QLAM layers. Default: 32."""
    layers: int = 2
    """Stacked QLAM blocks. Default: 2."""
    heads: int = 16
    """Independent quantum memories per layer. Default: 16."""
    qubits: int = CellConfig.qubits
    """Qubits per memory. Default: CellConfig's (3)."""
    depth: int = CellConfig.depth
    """Mixing layers per token in the cell. Default: CellConfig's (1)."""
    entanglement: str = CellConfig.entanglement
    """Entangling layout of the cell: ring, linear, full, none. Default: CellConfig's ("ring")."""
    entangler: str = CellConfig.entangler
    """Two-qubit gate of the cell: rzz (trainable strength), cz, cx. Default: CellConfig's ("rzz")."""
    encoding: str = CellConfig.encoding
    """Input block: rz, rz_zz or ry_rz (see CellConfig). Default: CellConfig's ("rz")."""
    queries: int = 2
    """Learned measurement bases K per memory. Default: 2."""
    correlators: str = "pairs"
    """Z-correlators read per query besides each ⟨Z_q⟩: none, pairs (entangled pairs), all. Default: "pairs"."""
    max_len: int = 0
    """If > 0, a learned position embedding for up to max_len tokens is added to the token
    embedding, so input angles can depend on where a token is. Default: 0 (none)."""
    pool: str = "mean"
    """How the sequence is summarised for the classifier: mean over tokens, or the last token. Default: "mean"."""
    dropout: float = 0.0
    """Dropout on residual branches. Default: 0.0."""
    gate: bool = False
    """Multiply each layer's readout map by a learned gate of its input token, σ(G x_t + g), as
    gated SSM blocks (H3, Mamba) do: a token can silence what the memories report. Classical
    post-processing of the measured values, so it runs on hardware too. Default: False."""
    mix_init: float = 1.0
    """Mixing weights start uniform in [-mix_init, mix_init] (angles Δ_h times these). Default: 1.0."""
    input_scale: float = 1.0
    """Initial std of a token's input weights for unit-variance features (angles Δ_h times
    these); the input biases start uniform in [-input_scale, input_scale]. Default: 1.0."""
    dt_min: float = 1e-3
    """Step Δ of the slowest memory at initialisation (memories log-spaced up to dt_max). Default: 1e-3."""
    dt_max: float = 1e-1
    """Step Δ of the fastest memory at initialisation; 0 turns time scales off (angles are the
    weights themselves, biases uniform in [-π, π]: the design before 2026-11-29). Default: 1e-1."""
    dtype: str = "complex64"
    """Statevector precision: complex64 or complex128. Default: "complex64"."""
    kernel: str = "auto"
    """How the memories are simulated: a name from the engine's ``KERNELS`` table (auto, fused,
    dense, dense-adjoint, product, steps). Default: "auto" (fused on CPU, dense on CUDA)."""
    attn_head_dim: int = 16
    """Transformer baseline only: the narrowest attention head; the mixer splits d_model into
    d_model / w heads for the smallest divisor w >= attn_head_dim (d_model 36: 2 heads of 18).
    0: gcd(d_model, heads) heads, as before 2026-12-03 (36: 4 heads of 9, 3.5x slower on CPU).
    Default: 16."""
    memory: str = "pure"
    """What a memory is: pure (a statevector, the cell's unitary per token) or damped (a density
    matrix: the cell, then amplitude damping of every qubit through a reset ancilla, at learned
    rates; see models/damped.py). Default: "pure"."""
    rate_min: float = 1e-3
    """memory='damped': the slowest memory's damping rate per token at initialisation (rates
    log-spaced over the memories up to rate_max; γ = 1 - exp(-rate)). Default: 1e-3."""
    rate_max: float = 1e-1
    """memory='damped': the fastest memory's damping rate per token. Default: 1e-1."""
    selective: bool = False
    """memory='damped': each token sets its own damping rates, ρ_t = exp(ν + G x_t + g) per
    memory qubit (G, g start at zero), as selective SSMs make their step depend on the token.
    On a circuit each reset ancilla's damping angle becomes a per-token input. Default: False."""
    cell: str = "qlam"
    """Which cell the layers run: qlam (built from qubits, depth, entanglement, entangler,
    encoding) or custom (a circuit given as ``QLAMClassifier(cfg, cell=...)``, stored with the
    checkpoint; qubits is then its width and the other cell fields are unused). Default: "qlam"."""

    def cell_config(self) -> CellConfig:
        return CellConfig(qubits=self.qubits, depth=self.depth, entanglement=self.entanglement,
                          entangler=self.entangler, encoding=self.encoding)


class QLAMLayer(nn.Module):
    """H quantum memories read by K learned bases at every token (or only the last)."""

    def __init__(self, d_in: int, d_out: int, *, heads: int = 1,
                 cell: CellConfig | CellTemplate = CellConfig(),
                 queries: int = ModelConfig.queries, correlators: str = ModelConfig.correlators,
                 readout: str = "all", mix_init: float = ModelConfig.mix_init,
                 input_scale: float = ModelConfig.input_scale, dt_min: float = ModelConfig.dt_min,
                 dt_max: float = ModelConfig.dt_max, dtype: str = ModelConfig.dtype,
                 kernel: str = ModelConfig.kernel, gate: bool = ModelConfig.gate) -> None:
        super().__init__()
        if readout not in ("all", "last"):
            raise ValueError(f"readout must be 'all' or 'last', got {readout!r}")
        self.heads, self.readout = heads, readout
        tpl = cell if isinstance(cell, CellTemplate) else qlam_cell(cell)  # any circuit, or QLAM's
        self.cell_template = tpl
        self.readout_template = qlam_readout(tpl.num_qubits, queries, correlators=correlators,
                                             pairs=tpl.entangling_pairs)
        self.engine = SequenceEngine(tpl, init_circuit(tpl.num_qubits), dtype=dtype, kernel=kernel)
        self.measure = ReadoutEngine(self.readout_template, dtype=dtype)
        m, p = len(tpl.inputs), len(tpl.weights)
        self.proj = nn.Linear(d_in, heads * m)  # token -> per-head input angles
        nn.init.normal_(self.proj.weight, std=input_scale / math.sqrt(d_in))
        bias = input_scale if dt_max > 0 else math.pi
        nn.init.uniform_(self.proj.bias, -bias, bias)
        self.mix = nn.Parameter(torch.empty(heads, p).uniform_(-mix_init, mix_init))  # (H, P)
        self.basis = nn.Parameter(torch.rand(heads, len(self.readout_template.weights))
                                  * 2 * math.pi)  # (H, 3nK)
        if dt_max > 0:
            if not 0 < dt_min <= dt_max:
                raise ValueError(f"time scales need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
            lo, hi = math.log(dt_min), math.log(dt_max)  # one memory: the middle of the range
            self.log_dt = nn.Parameter(torch.linspace(lo, hi, heads) if heads > 1
                                       else torch.tensor([(lo + hi) / 2]))
        else:
            self.register_parameter("log_dt", None)
        for angle in (self.mix, self.basis, self.log_dt):  # circuit angles: own lr, no decay
            if angle is not None:
                angle._optim = {"weight_decay": 0.0, "circuit": True}
        self.out = nn.Linear(heads * self.readout_template.num_outputs, d_out)
        self.gate = nn.Linear(d_in, d_out) if gate else None  # x_t -> σ(G x_t + g) on out_t

    def gated(self, out: Tensor, x: Tensor) -> Tensor:
        """The readout map out (..., d_out) times the gate of its tokens x (..., d_in), if any."""
        return out if self.gate is None else out * torch.sigmoid(self.gate(x))

    def steps(self) -> Tensor | None:
        """Each memory's step Δ_h (H,), or None without time scales."""
        return None if self.log_dt is None else torch.exp(self.log_dt)

    def input_angles(self, x: Tensor) -> Tensor:
        """The cell's input angles of every memory: x (..., d_in) -> θ (..., H, m) = Δ_h (W x + b).
        What a circuit of this layer binds to its input parameters."""
        theta = self.proj(x).unflatten(-1, (self.heads, -1))  # (..., H, m)
        dt = self.steps()
        return theta if dt is None else theta * dt[:, None]

    def mixing(self) -> Tensor:
        """The cell's weight angles of every memory: (H, P) = Δ_h w_h. What a circuit of this
        layer binds to its weight parameters."""
        dt = self.steps()
        return self.mix if dt is None else self.mix * dt[:, None]

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d_in) -> (B, T, d_out), or (B, d_out) when readout='last'."""
        if self.readout == "all" and self.engine.reads_fused(x.device, self.measure):
            return self.gated(self._read_fused(x), x)
        theta = self.input_angles(x).permute(1, 2, 0, 3)  # (T, H, B, m)
        states = self.engine.run(theta, self.mixing(), all_states=self.readout == "all")
        ev = self.measure(states, self.basis)  # (T, H, B, K, M) or (H, B, K, M)
        ev = ev.movedim(-3, 0).flatten(-3)  # (B, T, H*K*M) or (B, H*K*M)
        return self.gated(self.out(ev.to(self.out.weight.dtype)),
                          x if self.readout == "all" else x[:, -1])


    def _read_fused(self, x: Tensor) -> Tensor:
        """forward() with the readout inside the fused kernel. The input map is folded into proj
        and both Linear maps run as one GEMM over the B·T tokens, in the kernel's layouts
        (heads first, tokens and samples last): no per-token tensor is transposed."""
        (b, t, d), h = x.shape, self.heads
        mix = self.mixing()  # (H, P)
        p, c = self.engine.relative_phases(mix)  # (m, n), (H, n): δ = θ P + c
        p, c = p.to(self.proj.weight.dtype), c.to(self.proj.weight.dtype)
        w, bias = self.proj.weight.view(h, -1, d), self.proj.bias.view(h, -1)  # (H, m, d), (H, m)
        dt = self.steps()
        if dt is not None:  # θ = Δ_h (W x + b)
            w, bias = w * dt[:, None, None], bias * dt[:, None]
        w_in = torch.einsum("jq,hjd->hqd", p, w)  # (H, n, d)
        b_in = torch.einsum("jq,hj->hq", p, bias) + c  # (H, n)
        tokens = x.transpose(0, 1).reshape(t * b, d)  # (T·B, d), time-major
        delta = torch.addmm(b_in.reshape(-1, 1), w_in.reshape(-1, d), tokens.T)  # (H·n, T·B)
        ev = self.engine.read(delta.view(h, -1, t, b), mix, self.measure,
                              self.basis)  # (H, K, M, T, B)
        ev = ev.reshape(-1, t * b).to(self.out.weight.dtype)  # (H·K·M, T·B)
        out = torch.addmm(self.out.bias, ev.T, self.out.weight.T)  # (T·B, d_out), time-major
        return out.view(t, b, -1).transpose(0, 1)  # (B, T, d_out), features contiguous

    def default_state(self, batch: int, device=None) -> Tensor:
        """The memories before the first token, |+>^n per head: (H, B, D) complex."""
        return self.engine.initial_state(self.heads, batch, device)

    def step(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Streaming inference: one token x_t (B, d_in) and the carried state (H, B, D) ->
        (readout features mapped to (B, d_out), next state). Equals forward() token by token."""
        theta = self.input_angles(x_t).transpose(0, 1)  # (H, B, m)
        state = self.engine.step(theta, self.mixing(), state)  # (H, B, D)
        ev = self.measure(state, self.basis).movedim(-3, 0).flatten(-3)  # (B, H*K*M)
        return self.gated(self.out(ev.to(self.out.weight.dtype)), x_t), state


class ResidualBlock(nn.Module):
    """Pre-norm residual block: x + mixer(LN x), then x + MLP(LN x)."""

    def __init__(self, mixer: nn.Module, d: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2, self.mixer = nn.LayerNorm(d), nn.LayerNorm(d), mixer
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.mixer(self.norm1(x)))  # (B, T, d)
        return x + self.drop(self.mlp(self.norm2(x)))


class QLAMClassifier(nn.Module):
    """Embed tokens, stack residual blocks, pool over time (mean or last token), classify.

    The blocks' sequence mixer is a QLAMLayer; ``mixer`` (a factory returning a module mapping
    (B, T, d) -> (B, T, d)) swaps it, which is how the classical baselines share this frame.
    ``cell`` (any circuit, see circuits/custom.py) replaces ``cfg.cell_config()`` in every layer;
    ``self.config`` is then a copy of ``cfg`` with cell="custom" and qubits = the cell's width.
    """

    def __init__(self, cfg: ModelConfig, mixer: Callable[[], nn.Module] | None = None, *,
                 cell: CellTemplate | None = None) -> None:
        super().__init__()
        if cfg.pool not in POOLS:
            raise ValueError(f"pool must be 'mean' or 'last', got {cfg.pool!r}")
        if cfg.cell not in ("qlam", "custom"):
            raise ValueError(f"cell must be 'qlam' or 'custom', got {cfg.cell!r}")
        if cell is not None:
            if mixer is not None:
                raise ValueError("cell= sets the QLAM layers' circuit; a model with its own mixer "
                                 "has none: pass one of mixer= and cell=")
            cfg = replace(cfg, cell="custom", qubits=cell.num_qubits)
        elif cfg.cell == "custom" and mixer is None:
            raise ValueError("ModelConfig(cell='custom') needs its circuit: pass cell= (load_cell, "
                             "or cell_from_bytes of the checkpoint's stored cell)")
        self.config = cfg
        self.cell_template: CellTemplate | None = None if mixer else (
            cell if cell is not None else qlam_cell(cfg.cell_config()))
        """The circuit every QLAM layer runs (None with a custom mixer): store it with a custom run."""
        if cfg.memory not in MEMORIES:
            raise ValueError(f"memory must be one of {MEMORIES}, got {cfg.memory!r}")
        if cfg.selective and (cfg.memory != "damped" or mixer is not None):
            raise ValueError("selective damping sets damped memories' rates per token: add "
                             "--memory damped (memory='damped'), or drop --selective")
        d = cfg.d_model
        if mixer is None and cfg.memory == "damped":
            mixer = lambda: DampedQLAMLayer(  # noqa: E731
                d, d, heads=cfg.heads, cell=self.cell_template, queries=cfg.queries,
                correlators=cfg.correlators, mix_init=cfg.mix_init, input_scale=cfg.input_scale,
                dt_min=cfg.dt_min, dt_max=cfg.dt_max, rate_min=cfg.rate_min,
                rate_max=cfg.rate_max, dtype=cfg.dtype, gate=cfg.gate, selective=cfg.selective)
        make = mixer or (lambda: QLAMLayer(
            d, d, heads=cfg.heads, cell=self.cell_template, queries=cfg.queries,
            correlators=cfg.correlators, mix_init=cfg.mix_init, input_scale=cfg.input_scale,
            dt_min=cfg.dt_min, dt_max=cfg.dt_max,
            dtype=cfg.dtype, kernel=cfg.kernel, gate=cfg.gate))
        self.embed = nn.Linear(cfg.d_input, d)
        self.pos = nn.Parameter(torch.zeros(cfg.max_len, d)) if cfg.max_len else None
        self.blocks = nn.ModuleList(ResidualBlock(make(), d, cfg.dropout)
                                    for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.num_classes)

    def embed_tokens(self, x: Tensor) -> Tensor:
        """x (B, T, d_input) -> residual stream (B, T, d): token embedding plus positions."""
        h = self.embed(x)  # (B, T, d)
        if self.pos is not None:
            if x.shape[1] > self.pos.shape[0]:
                raise ValueError(f"sequence of {x.shape[1]} tokens is longer than max_len "
                                 f"{self.pos.shape[0]} of the position embedding")
            h = h + self.pos[: x.shape[1]]
        return h

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d_input) -> logits (B, num_classes)."""
        h = self.embed_tokens(x)  # (B, T, d)
        for block in self.blocks:
            h = block(h)
        h = h.mean(dim=1) if self.config.pool == "mean" else h[:, -1]  # (B, d)
        return self.head(self.norm(h))  # (B, classes)

    def config_dict(self) -> dict:
        return asdict(self.config)
