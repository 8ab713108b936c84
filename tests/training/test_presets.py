"""Task presets: the memories' time scales follow the sequence length."""

from __future__ import annotations

import pytest

from qlam_qiskit.data import TASK_INFO
from qlam_qiskit.models import ModelConfig
from qlam_qiskit.training.presets import PRESETS, REFERENCE_LEN, preset


@pytest.mark.parametrize("task", sorted(PRESETS))
@pytest.mark.parametrize("downsample", [1, 2, 4])
def test_steps_scale_inversely_with_sequence_length(task, downsample):
    """Δ·T is the same on every task and downsampling: each memory turns by the same total angle
    over a sequence, and T = 784 gets ModelConfig's own range."""
    t, _ = TASK_INFO[task].shape(downsample)
    m = preset(task, downsample)["model"]
    assert m["dt_min"] * t == pytest.approx(ModelConfig.dt_min * REFERENCE_LEN, rel=1e-5)
    assert m["dt_max"] * t == pytest.approx(ModelConfig.dt_max * REFERENCE_LEN, rel=1e-5)
    assert 0 < m["dt_min"] < m["dt_max"]
    ModelConfig(**m)  # every key is a model field


def test_full_length_smnist_is_the_reference():
    assert preset("smnist")["model"] == {"dt_min": ModelConfig.dt_min, "dt_max": ModelConfig.dt_max}
    assert preset("mnist-mini")["model"] == pytest.approx({"dt_min": 4e-3, "dt_max": 0.4})
