"""The diagonal-phase op (Kronecker forward, matmul backward) against its plain reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlam_qiskit.backends.engine.phases import phases, phases_ref


def _tables(qubits, local, n):
    idx = np.arange(2**n)
    pat = np.stack([np.asarray(local[g])[(idx >> q) & 1] for g, q in enumerate(qubits)])
    return torch.tensor(pat), torch.tensor(local, dtype=torch.float64)


@pytest.mark.parametrize("n,qubits", [(1, (0,)), (3, (0, 2, 1, 0)), (4, (3, 1))])
@pytest.mark.parametrize("kron", [True, False])
def test_phases_match_reference_values_and_grads(n, qubits, kron):
    local = [[-0.5, 0.5] if g % 2 == 0 else [0.0, 1.0] for g in range(len(qubits))]
    pat, loc = _tables(qubits, local, n)
    ang = torch.randn(2, 3, len(qubits), dtype=torch.float64, requires_grad=True)
    args = (qubits, loc) if kron else (None, None)
    d, ref = phases(ang, pat, *args), phases_ref(ang, pat)
    assert torch.allclose(d, ref, atol=1e-12)
    w = torch.randn_like(d)
    (g,) = torch.autograd.grad((d * w).real.sum(), ang)
    (g_ref,) = torch.autograd.grad((ref * w).real.sum(), ang)
    assert torch.allclose(g, g_ref, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a: phases(a, pat, *args), (ang,))
