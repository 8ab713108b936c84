"""The plain-torch layer reference against QLAMLayer.forward (every kernel, values and gradients)
and against Qiskit's Statevector on the unrolled sequence circuit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector

from qlam_qiskit.backends.engine import kernels
from qlam_qiskit.circuits.cell import CellConfig
from qlam_qiskit.circuits.readout import z_observables
from qlam_qiskit.circuits.sequence import qlam_sequence, sequence_parameter_values
from qlam_qiskit.models.qlam import QLAMLayer
from qlam_qiskit.models.reference import qlam_layer_ref, qlam_readouts_ref

TOL = 1e-10
PRODUCT = CellConfig(qubits=3, entangler="rzz")  # product form: every kernel applies
DENSE = CellConfig(qubits=3, entangler="cx", encoding="rz_zz")  # (diag, fixed), no product form
STEPS = CellConfig(qubits=2, encoding="ry_rz", entanglement="linear")  # non-diagonal inputs
CASES = ([(PRODUCT, k) for k in ("fused", "dense", "dense-adjoint", "product", "steps")]
         + [(DENSE, k) for k in ("dense", "dense-adjoint", "steps")] + [(STEPS, "steps")])


def make_layer(cfg: CellConfig, kernel: str, readout: str, seed: int = 0,
               dt: tuple[float, float] = (0.5, 2.0), gate: bool = False) -> QLAMLayer:
    """A float64 / complex128 layer with 2 heads and 2 queries; time scales ``dt`` (steps of
    order one, so every angle is large enough to test), or none with (0, 0)."""
    torch.manual_seed(seed)
    return QLAMLayer(4, 5, heads=2, cell=cfg, queries=2, correlators="pairs", readout=readout,
                     dt_min=dt[0], dt_max=dt[1], dtype="complex128", kernel=kernel,
                     gate=gate).double()


def case_id(case) -> str:
    cfg, kernel = case
    return f"n{cfg.qubits}-{cfg.entangler}-{cfg.encoding}-{kernel}"


@pytest.mark.parametrize("readout", ["all", "last"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_reference_equals_forward(case, readout):
    cfg, kernel = case
    if kernel == "fused" and not kernels.available():
        pytest.skip("needs numba")
    layer = make_layer(cfg, kernel, readout)
    assert layer.engine.kernel_for(torch.device("cpu")) == kernel  # the kernel under test runs
    g = torch.Generator().manual_seed(1)
    for b in (1, 3, 5):  # ragged batches: the fused kernel's lanes do not divide them evenly
        x = torch.randn(b, 6, 4, generator=g, dtype=torch.float64)
        got, want = layer(x), qlam_layer_ref(layer, x)
        assert got.shape == want.shape == ((b, 6, 5) if readout == "all" else (b, 5))
        torch.testing.assert_close(got, want, rtol=0, atol=TOL)


@pytest.mark.parametrize("readout", ["all", "last"])
@pytest.mark.parametrize("case", [(PRODUCT, "fused"), (PRODUCT, "dense-adjoint"),
                                  (DENSE, "dense"), (STEPS, "steps")], ids=case_id)
def test_reference_gradients_equal_forward_gradients(case, readout):
    cfg, kernel = case
    if kernel == "fused" and not kernels.available():
        pytest.skip("needs numba")
    layer = make_layer(cfg, kernel, readout, seed=2)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    c = torch.randn(layer(x).shape, generator=g, dtype=torch.float64)  # loss weights
    params = dict(layer.named_parameters())
    assert set(params) == {"proj.weight", "proj.bias", "mix", "basis", "log_dt", "out.weight",
                           "out.bias"}
    got = torch.autograd.grad((layer(x) * c).sum(), list(params.values()))
    want = torch.autograd.grad((qlam_layer_ref(layer, x) * c).sum(), list(params.values()))
    for name, a, b in zip(params, got, want):
        assert b.abs().max() > 0, name  # every parameter really gets a gradient
        torch.testing.assert_close(a, b, rtol=0, atol=TOL * max(1.0, b.abs().max().item()),
                                   msg=name)


@pytest.mark.parametrize("readout", ["all", "last"])
@pytest.mark.parametrize("kernel", ["fused", "dense"])
def test_gated_layer_equals_reference_in_values_and_gradients(kernel, readout):
    """The readout gate σ(G x_t + g): forward (fused and unfused paths) against the reference."""
    if kernel == "fused" and not kernels.available():
        pytest.skip("needs numba")
    layer = make_layer(PRODUCT, kernel, readout, seed=4, gate=True)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    y = layer(x)
    torch.testing.assert_close(y, qlam_layer_ref(layer, x), rtol=0, atol=TOL)
    layer.gate = None  # the gate really changes the output
    assert (y - layer(x)).abs().max() > 1e-3
    layer = make_layer(PRODUCT, kernel, readout, seed=4, gate=True)
    c = torch.randn(y.shape, generator=g, dtype=torch.float64)
    params = dict(layer.named_parameters())
    assert {"gate.weight", "gate.bias"} <= set(params)
    got = torch.autograd.grad((layer(x) * c).sum(), list(params.values()))
    want = torch.autograd.grad((qlam_layer_ref(layer, x) * c).sum(), list(params.values()))
    for name, a, b in zip(params, got, want):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, rtol=0, atol=TOL * max(1.0, b.abs().max().item()),
                                   msg=name)


@pytest.mark.parametrize("dt", [(0.5, 2.0), (0.0, 0.0)], ids=["timescales", "none"])
@pytest.mark.parametrize("kernel", ["fused", "dense"])
def test_time_scales_scale_every_angle(kernel, dt):
    """Δ_h multiplies a memory's input and mixing angles: the layer equals a layer without time
    scales whose weights are Δ_h times its own; without time scales there is no log_dt."""
    layer = make_layer(PRODUCT, kernel, "all", seed=6, dt=dt)
    plain = make_layer(PRODUCT, kernel, "all", seed=6, dt=(0.0, 0.0))
    assert (layer.log_dt is None) == (dt[1] == 0) and plain.log_dt is None
    with torch.no_grad():
        step = layer.steps() if layer.log_dt is not None else torch.ones(2, dtype=torch.float64)
        for name in ("proj.weight", "proj.bias", "basis", "out.weight", "out.bias"):
            plain.get_parameter(name).copy_(layer.get_parameter(name))
        m = plain.proj.weight.shape[0] // 2
        plain.proj.weight.mul_(step.repeat_interleave(m)[:, None])
        plain.proj.bias.mul_(step.repeat_interleave(m))
        plain.mix.copy_(layer.mix * step[:, None])
    x = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=TOL)
    if dt[1]:
        assert not torch.allclose(layer(x), make_layer(PRODUCT, kernel, "all", seed=6,
                                                        dt=(0.05, 0.2))(x))


@pytest.mark.parametrize("readout", ["all", "last"])
@pytest.mark.parametrize("cfg", [PRODUCT, DENSE, STEPS], ids=lambda c: case_id((c, "")))
def test_reference_readouts_equal_qiskit_statevector(cfg, readout):
    """One sample: bind qlam_sequence (init + T cells) and each query's rotation circuit, and
    take Statevector expectation values of the Z terms."""
    layer = make_layer(cfg, "auto", readout, seed=4)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    sample = 1
    with torch.no_grad():
        y = qlam_readouts_ref(layer, x)[sample].numpy()  # (T, H, K, M) or (H, K, M)
        theta = layer.input_angles(x[sample]).numpy()  # (T, H, m): Δ_h (W x + b)
        mix = layer.mixing().numpy()  # (H, P): Δ_h w_h
    ro, n = layer.readout_template, cfg.qubits
    obs = z_observables(n, ro.terms)
    basis = layer.basis.detach().numpy()
    tokens = range(1, 4) if readout == "all" else [3]
    for t in tokens:
        seq = qlam_sequence(layer.cell_template, t)
        for h in range(layer.heads):
            values = sequence_parameter_values(seq, theta[:t, h], mix[h])  # (num_parameters,)
            state = seq.circuit.assign_parameters(values)
            for k, rot in enumerate(ro.circuits):
                full = state.compose(rot.assign_parameters(dict(zip(ro.weights, basis[h])),
                                                           strict=False))
                sv = Statevector(full)
                want = [sv.expectation_value(o).real for o in obs]
                got = y[t - 1, h, k] if readout == "all" else y[h, k]
                np.testing.assert_allclose(got, want, rtol=0, atol=TOL,
                                           err_msg=f"token {t} head {h} query {k}")
