"""Test helper: a layer's forward and every gradient on its fast kernel against the same layer
with that kernel swapped for its plain reference."""

from __future__ import annotations

import torch


def outputs_and_grads(lay: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """lay(x) and the gradient of every parameter for a fixed, position-dependent loss."""
    lay.zero_grad()
    out = lay(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach(), {k: p.grad.clone() for k, p in lay.named_parameters()}


def assert_kernel_matches_reference(lay, x, monkeypatch, module, name: str, reference,
                                    atol: float, grad_atol: float) -> dict:
    """Run ``lay`` on x as it is, then with ``module.name`` replaced by ``reference``; assert
    outputs and gradients agree. Returns the fast path's gradients."""
    fast, g_fast = outputs_and_grads(lay, x)
    monkeypatch.setattr(module, name, reference)
    ref, g_ref = outputs_and_grads(lay, x)
    assert torch.allclose(fast, ref, atol=atol)
    for k in g_ref:
        assert torch.allclose(g_fast[k], g_ref[k], atol=grad_atol), k
    return g_fast
