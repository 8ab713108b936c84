"""Task presets: the memories' time scales follow the sequence length."""

from __future__ import annotations

import pytest

from qlam_qiskit.data import TASK_INFO
from qlam_qiskit.models import ModelConfig
from qlam_qiskit.training.presets import DAMPED, PRESETS, REFERENCE_LEN, preset


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
    assert preset("smnist")["model"] == {**DAMPED, "dt_min": ModelConfig.dt_min,
                                         "dt_max": ModelConfig.dt_max,
                                         "rate_min": ModelConfig.rate_min,
                                         "rate_max": ModelConfig.rate_max}
    assert preset("mnist-mini")["model"] == pytest.approx({"dt_min": 4e-3, "dt_max": 0.4,
                                                           "rate_min": 4e-3, "rate_max": 0.4})


def test_a_damped_memory_by_option_gets_the_tasks_rates():
    """A primitives run keeps pure memories by default; ``--memory damped`` on it still gets the
    damping rates scaled to the task's T (the engine preset's), not ModelConfig's T = 784 ones."""
    m = preset("scifar10", 1, "primitives")["model"]
    assert "memory" not in m
    assert m["rate_min"] * 1024 == pytest.approx(ModelConfig.rate_min * REFERENCE_LEN, rel=1e-5)
    cfg = ModelConfig(**{**m, "memory": "damped"})
    assert cfg.rate_max == pytest.approx(ModelConfig.rate_max * REFERENCE_LEN / 1024, rel=1e-5)


@pytest.mark.parametrize("task", ["smnist", "psmnist", "sfmnist", "scifar10"])
@pytest.mark.parametrize("downsample", [1, 4])
def test_full_length_tasks_run_damped_memories_at_the_steps_rates(task, downsample):
    """Full-length presets: damped 2-qubit memories whose damping per token scales with the
    steps (rate·T fixed), so a memory keeps the same share of any sequence."""
    t, _ = TASK_INFO[task].shape(downsample)
    m = preset(task, downsample)["model"]
    assert m["memory"] == "damped" and m["qubits"] == 2
    assert m["rate_min"] * t == pytest.approx(ModelConfig.rate_min * REFERENCE_LEN, rel=1e-5)
    assert m["rate_max"] / m["rate_min"] == pytest.approx(m["dt_max"] / m["dt_min"], rel=1e-5)


def test_another_memory_drops_the_damped_memorys_own_options():
    """--memory pure on a full-length task: 2-qubit memories with the preset's queries, but RZ
    inputs and no selective damping (they belong to the damped memory); options given win."""
    from qlam_qiskit.training.presets import DAMPED_ONLY, with_options
    m = preset("smnist")["model"]
    assert all(k in m for k in DAMPED_ONLY)
    pure = ModelConfig(**with_options(m, {"memory": "pure"}))
    assert (pure.memory, pure.encoding, pure.selective) == ("pure", "rz", False)
    assert pure.qubits == m["qubits"] and pure.queries == m["queries"]
    mine = ModelConfig(**with_options(m, {"memory": "pure", "encoding": "rz_zz"}))
    assert mine.encoding == "rz_zz"
    same = ModelConfig(**with_options(m, {"selective": False}))
    assert (same.memory, same.encoding, same.selective) == ("damped", "ry_rz", False)
