"""Classical baselines: same contract as QLAMClassifier, trainable, and selectable from the CLI."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from click.testing import CliRunner

from qlam_qiskit.cli.main import main
from qlam_qiskit.models import ModelConfig
from qlam_qiskit.models.baselines import (BASELINES, BaselineClassifier, _AttentionMixer,
                                         _UnitaryRNN, attention_heads)

CFG = dict(d_input=2, num_classes=4, d_model=8, layers=2, heads=2, qubits=2, max_len=12)


@pytest.mark.parametrize("kind", BASELINES)
def test_baseline_shapes_and_gradients(kind):
    torch.manual_seed(0)
    model = BaselineClassifier(kind, ModelConfig(**CFG))
    x = torch.randn(3, 12, 2)
    logits = model(x)
    assert logits.shape == (3, 4)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("kind", ["lstm", "gru", "transformer", "ssm", "urnn"])
def test_baselines_are_causal(kind):
    """Changing a later token never changes the mixer's outputs at earlier tokens."""
    torch.manual_seed(1)
    block = BaselineClassifier(kind, ModelConfig(**CFG)).blocks[0]
    x = torch.randn(2, 12, 8)
    y = x.clone()
    y[:, 7:] += 1.0
    assert torch.allclose(block(x)[:, :7], block(y)[:, :7], atol=1e-5)


@pytest.mark.parametrize("d, heads, t", [(8, 2, 12), (36, 4, 50), (36, 2, 50), (6, 3, 1)])
def test_attention_fast_path_equals_multihead_attention(d, heads, t):
    """The fused causal attention gives nn.MultiheadAttention's values and input gradients."""
    torch.manual_seed(2)
    mixer = _AttentionMixer(d, heads).double()
    x = torch.randn(3, t, d, dtype=torch.float64, requires_grad=True)
    y, y_ref = mixer(x), mixer.reference(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, mixer.attn.in_proj_weight), g)
    gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, mixer.attn.in_proj_weight), g)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("d, head_dim, heads", [(36, 16, 2), (32, 16, 2), (64, 16, 4), (40, 16, 2),
                                                (8, 16, 1), (17, 16, 1), (36, 0, 4), (32, 0, 16)])
def test_attention_heads_are_at_least_head_dim_wide(d, head_dim, heads):
    """Heads of width >= attn_head_dim dividing d_model; 0 keeps the old gcd(d, memories) split."""
    assert attention_heads(d, head_dim, memories=16) == heads


def test_transformer_checkpoints_from_before_head_widths_keep_their_heads():
    """A config stored without attn_head_dim loads with the old head split (same function)."""
    from qlam_qiskit.training.loop import TrainConfig
    from qlam_qiskit.training.plan import stored_configs
    old = asdict(ModelConfig(d_model=36))
    del old["attn_head_dim"]
    mcfg, _ = stored_configs({"model_config": old, "train_config": asdict(TrainConfig())}, "x")
    assert mcfg.attn_head_dim == 0
    model = BaselineClassifier("transformer", mcfg)
    assert model.blocks[0].mixer.attn.num_heads == 4
    assert BaselineClassifier("transformer", ModelConfig(d_model=36)).blocks[0].mixer.attn.num_heads == 2


def test_urnn_recurrence_is_unitary():
    layer = _UnitaryRNN(4, heads=2, qubits=3)
    a = torch.complex(layer.gen, layer.gen.transpose(1, 2))
    u = torch.linalg.matrix_exp(a - a.mH)
    eye = torch.eye(8, dtype=u.dtype).expand_as(u)
    assert torch.allclose(u @ u.mH, eye, atol=1e-5)


def test_unknown_baseline_is_refused():
    with pytest.raises(ValueError, match="unknown model"):
        BaselineClassifier("mamba", ModelConfig(**CFG))


def test_cli_trains_a_baseline(tmp_path):
    out = tmp_path / "lstm"
    res = CliRunner().invoke(main, ["run", "--model", "lstm", "--limit-train", "32",
                                    "--limit-test", "16", "--epochs", "1", "--batch-size", "16",
                                    "--layers", "1", "--d-model", "8", "--quiet", "--out", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "result.json").read_text())
    assert result["model"] == "lstm" and 0.0 <= result["test_accuracy"] <= 1.0
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["model_kind"] == "lstm"
