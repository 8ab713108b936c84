"""QLAM layer and classifier: shapes, last-token readout, optimiser groups, seeded reproducibility."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qlam_qiskit.circuits.cell import CellConfig
from qlam_qiskit.models import ModelConfig, QLAMClassifier, QLAMLayer
from qlam_qiskit.training.loop import TrainConfig, param_groups, seed_everything

TINY = dict(d_model=8, layers=2, heads=2, qubits=3, queries=2, d_input=1, num_classes=5)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_classifier_forward_shape(dtype):
    torch.manual_seed(0)
    model = QLAMClassifier(ModelConfig(**TINY, dtype=dtype))
    x = torch.randn(4, 7, 1)
    logits = model(x)
    assert logits.shape == (4, 5) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.blocks[0].mixer.mix.grad.abs().sum() > 0  # gradients reach the circuit angles
    assert model.blocks[0].mixer.basis.grad.abs().sum() > 0


@pytest.mark.parametrize("cell", [CellConfig(qubits=3), CellConfig(qubits=2, encoding="ry_rz",
                                                                     entangler="rzz", depth=2)],
                         ids=["rz", "ry_rz"])
def test_layer_readout_shapes_and_last_equals_last_token(cell):
    torch.manual_seed(1)
    full = QLAMLayer(3, 6, heads=2, cell=cell, queries=2, readout="all", dtype="complex128")
    last = QLAMLayer(3, 6, heads=2, cell=cell, queries=2, readout="last", dtype="complex128")
    last.load_state_dict(full.state_dict())
    x = torch.randn(5, 9, 3)
    y_all, y_last = full(x), last(x)
    assert y_all.shape == (5, 9, 6) and y_last.shape == (5, 6)
    torch.testing.assert_close(y_last, y_all[:, -1], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="readout must be"):
        QLAMLayer(3, 6, readout="first")


def test_layer_is_causal():
    """Changing token t leaves the outputs at earlier tokens unchanged (a recurrent memory)."""
    torch.manual_seed(2)
    layer = QLAMLayer(2, 4, heads=2, cell=CellConfig(qubits=3), dtype="complex128")
    x = torch.randn(2, 8, 2)
    x2 = x.clone()
    x2[:, 5] += 1.0
    y, y2 = layer(x), layer(x2)
    torch.testing.assert_close(y[:, :5], y2[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(y[:, 5:], y2[:, 5:])


def test_param_groups_put_circuit_angles_in_their_own_group():
    torch.manual_seed(0)
    model = QLAMClassifier(ModelConfig(**TINY))
    cfg = TrainConfig(lr=1e-3, circuit_lr=5e-2, weight_decay=0.1)
    groups = param_groups(model, cfg)
    assert len(groups) == 3
    decay, no_decay, circuit = groups
    angles = [p for b in model.blocks for p in (b.mixer.mix, b.mixer.basis, b.mixer.log_dt)]
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(circuit["params"]) == ids(angles)
    assert circuit["lr"] == 5e-2 and circuit["weight_decay"] == 0.0
    assert decay["lr"] == no_decay["lr"] == 1e-3
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    assert ids(decay["params"]).isdisjoint(ids(angles))
    everything = [p for g in groups for p in g["params"]]
    assert len(everything) == len(ids(everything)) == len(list(model.parameters()))
    # the groups as AdamW sees them
    opt = torch.optim.AdamW(groups)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3, 5e-2]


def _build_and_step(seed: int) -> dict[str, torch.Tensor]:
    seed_everything(seed)
    model = QLAMClassifier(ModelConfig(**TINY, dropout=0.1))
    opt = torch.optim.AdamW(param_groups(model, TrainConfig()))
    x, y = torch.randn(6, 5, 1), torch.randint(0, 5, (6,))
    model.train()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_seeded_builds_and_a_training_step_repeat_exactly():
    a, b = _build_and_step(3), _build_and_step(3)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    c = _build_and_step(4)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("gate", [False, True], ids=["ungated", "gated"])
def test_layer_step_streams_the_same_outputs_as_forward(gate):
    """step() carried token by token reproduces forward() at every token, readout 'all'."""
    from qlam_qiskit.circuits.cell import CellConfig
    from qlam_qiskit.models import QLAMLayer

    torch.manual_seed(3)
    layer = QLAMLayer(5, 7, heads=3, cell=CellConfig(qubits=3, entangler="rzz"), dtype="complex128",
                      gate=gate)
    x = torch.randn(2, 9, 5)
    full = layer(x)  # (B, T, d_out)
    state = layer.default_state(2)
    outs = []
    for x_t in x.unbind(1):
        y, state = layer.step(x_t, state)
        outs.append(y)
    assert torch.allclose(torch.stack(outs, 1), full, atol=1e-5)  # float32 linear maps


def test_checkpoints_from_before_time_scales_load_without_them():
    """A model_config written before time scales (no dt_min/dt_max) means none: the weights of
    such a checkpoint (no log_dt) load into the model it describes, and give its logits."""
    from dataclasses import asdict

    from qlam_qiskit.training.plan import stored_configs

    torch.manual_seed(0)
    old = QLAMClassifier(ModelConfig(**TINY, dt_min=0.0, dt_max=0.0))
    record = {k: v for k, v in asdict(old.config).items() if k not in ("dt_min", "dt_max")}
    cfg, _ = stored_configs({"model_config": record, "train_config": {}}, "ckpt")
    assert cfg.dt_max == 0
    new = QLAMClassifier(cfg)
    new.load_state_dict(old.state_dict())  # strict: no log_dt expected or found
    x = torch.randn(2, 5, TINY.get("d_input", 1))
    torch.testing.assert_close(new(x), old(x))
    assert "blocks.0.mixer.log_dt" in QLAMClassifier(ModelConfig(**TINY)).state_dict()
