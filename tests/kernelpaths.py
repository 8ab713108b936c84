"""Test helpers: a layer's forward and every gradient on its fast kernel against the same layer
with that kernel swapped for its plain reference; a kernel's outputs against its reference's
within a relative tolerance; the same bits at any thread count."""

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


def assert_relatively_close(names, got, want, tol: float) -> None:
    """Pair by pair (named): the same shape and dtype, and max |got - want| / max |want| < tol."""
    for name, a, c in zip(names, got, want):
        assert a.shape == c.shape and a.dtype == c.dtype, name
        rel = ((a - c).abs().max() / c.abs().max()).item()
        assert rel < tol, f"{name}: {rel:.1e}"


def assert_same_bits_across_threads(run) -> None:
    """run() (a list of tensors) gives the same bits at 1, 2, then 1 torch threads again."""
    threads = torch.get_num_threads()
    try:
        runs = []
        for k in (1, 2, 1):
            torch.set_num_threads(k)
            runs.append(run())
    finally:
        torch.set_num_threads(threads)
    for run_ in runs[1:]:
        for a, c in zip(runs[0], run_):
            assert torch.equal(a, c)
