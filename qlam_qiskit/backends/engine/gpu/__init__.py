"""Fused product-form scan on NVIDIA GPUs (numba-cuda), with the learned-basis readout optional.

The same functions as the CPU kernel (``kernels.product_scan``) and its references
(``product.product_scan_ref``; a readout run equals ``product_scan_ref`` at every token followed by
the queries' rotations and Z-term signs), as ``torch.autograd.Function``s on CUDA tensors: one
launch per forward and one per backward, nothing copied to the host, all memory from torch's
allocator. Per-qubit input phases α are built in torch (``product.input_angles``), so gradients
reach θ, the input map and its offsets through ordinary autograd; the kernel takes α and gives
dL/dα. Backward walks back by the inverse updates (memory independent of T for last-state and
readout runs; stored anchors restart the walk exactly).

With ``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported, the same kernels run in numba's
CUDA simulator on CPU tensors (slow: tests and ``benchmarks/gpu_check.py --simulate``).

Why numba-cuda rather than Triton: numba (a dependency already) runs these kernels in its CUDA
simulator with nothing more installed, so CI holds them to the references; ``TRITON_INTERPRET=1``
needs the triton wheel (hundreds of MB) in CI. Explicit threads, shared memory and
``syncthreads`` also suit in-place butterflies on one qubit at a time. On a GPU machine numba-cuda
(the ``numba.cuda`` target package) must be installed; the lent CUDA 13 machines have it.
"""

from __future__ import annotations

import torch

from ....errors import EngineError
from ..product import input_angles

Tensor = torch.Tensor

READ_ANCHOR_EVERY = 32
"""Readout runs keep every 32nd state so the backward walk restarts exactly from it (the CPU
kernel's choice too): round-off drift stays bounded over any T, at T/32 stored states."""
SHARED_LIMIT = 48 * 1024
"""Shared memory a block may use without opting in (48 KiB on every CUDA GPU); states that do not
fit with the rest go to a global work buffer instead (complex64: from 12 qubits, 10 with the
readout)."""
BLOCK_THREADS = 128
"""Threads per block the launch heuristic aims at."""


def simulating() -> bool:
    """Whether numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1 before numba was imported)."""
    try:
        from numba.core import config
    except ImportError:
        return False
    return bool(config.ENABLE_CUDASIM)


def problem(device: torch.device | str | None = None) -> str | None:
    """Why the fused GPU kernel cannot run for tensors on ``device`` (None when it can)."""
    dev = torch.device(device) if device is not None else None
    if simulating():
        if dev is not None and dev.type != "cpu":
            return "numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) runs on CPU tensors only"
        return None
    if dev is not None and dev.type != "cuda":
        return f"the fused GPU kernel runs on CUDA tensors, not {dev.type}"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    try:
        from numba import cuda
    except ImportError:
        return "the fused GPU kernel needs numba-cuda: pip install numba-cuda"
    try:
        if not cuda.is_available():
            return "numba-cuda sees no CUDA device (driver or CUDA toolkit/NVVM missing?)"
    except Exception as err:  # noqa: BLE001 - any driver failure means unusable
        return f"numba-cuda cannot use the GPU: {str(err).splitlines()[0]}"
    return None


def available(device: torch.device | str | None = "cuda") -> bool:
    """Whether ``gpu_product_scan`` runs for tensors on ``device``."""
    return problem(device) is None


def launch_shape(n: int, heads: int, batch: int, *, threads_per_sample: int | None = None,
                 samples_per_block: int | None = None, device: torch.device | None = None
                 ) -> tuple[int, int]:
    """(threads per sample, samples per block), both powers of two.

    Threads per sample: one per butterfly pair up to 128 (so each gate is one pass). Samples per
    block: enough to fill ``BLOCK_THREADS``, but fewer when that would leave SMs idle (aim: two
    blocks per SM), never more than the batch needs."""
    d = 1 << n
    tps = threads_per_sample or min(max(1, d // 2), BLOCK_THREADS)
    if tps & (tps - 1) or not 1 <= tps <= max(1, d // 2):
        raise EngineError(f"threads_per_sample must be a power of two in [1, {max(1, d // 2)}], "
                          f"got {tps}")
    if samples_per_block is None:
        cap = max(1, BLOCK_THREADS // tps)
        sms = _sm_count(device)
        want = max(1, heads * batch // (2 * sms))
        spb = 1
        while spb * 2 <= min(cap, want) and spb < batch:
            spb *= 2
    else:
        spb = samples_per_block
    if spb & (spb - 1) or spb < 1 or spb * tps > 1024:
        raise EngineError(f"samples_per_block must be a power of two with samples_per_block × "
                          f"threads_per_sample <= 1024, got {spb} × {tps}")
    return tps, spb


def _sm_count(device: torch.device | None) -> int:
    if device is None or device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def _arr(t: Tensor):
    """The array a kernel takes for tensor t: numpy (simulator) or a zero-copy CUDA view."""
    t = t.detach()
    if simulating():
        return t.numpy()
    from numba import cuda

    return cuda.as_cuda_array(t)


def _real(t: Tensor) -> Tensor:
    return torch.view_as_real(t.contiguous()) if t.is_complex() else t


def _launch(kern, grid: int, block: int, smem: int, device: torch.device, args: list) -> None:
    args = [_arr(a) if isinstance(a, Tensor) else a for a in args]
    if simulating():
        kern[grid, block, 0, smem](*args)
        return
    from numba import cuda

    with cuda.gpus[device.index or 0]:
        stream = cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
        kern[grid, block, stream, smem](*args)


def _kernels(n: int, layers: int, queries: int, terms: int, tps: int, spb: int, double: bool,
             states_in: str | None):
    """(forward, backward, states in shared memory?, shared bytes forward, backward) for a
    shape; states sit in shared memory when they fit in ``SHARED_LIMIT``, else in a global work
    buffer. Kernels are compiled once per shape (not per batch size: spb is the launch's)."""
    from numba.core import config

    from . import kernel

    config.CUDA_LOW_OCCUPANCY_WARNINGS = False  # small batches are legitimate here
    size = lambda shared, backward: kernel.shared_bytes(  # noqa: E731
        n, layers, queries, terms, tps, spb, double, shared, backward)
    shared = size(True, True) <= SHARED_LIMIT if states_in is None else states_in == "shared"
    if size(shared, True) > SHARED_LIMIT and not simulating():
        raise EngineError(f"fused-gpu: {size(shared, True)} bytes of shared memory per block for "
                          f"n={n}, {terms} readout terms, {tps * spb} threads is over "
                          f"{SHARED_LIMIT}; pass a smaller threads_per_sample or samples_per_block")
    fwd, bwd = kernel.build(n, layers, queries, terms, tps, double, shared)
    return fwd, bwd, shared, size(shared, False), size(shared, True)


def _work(shared: bool, blocks: int, arrays: int, sd: int, real: torch.dtype,
          dev: torch.device) -> Tensor:
    """The global work buffer (blocks, arrays, 2·spb·D) when states are not in shared memory,
    else a placeholder."""
    shape = (1, 1, 1) if shared else (blocks, arrays, 2 * sd)
    return torch.empty(shape, dtype=real, device=dev)


class _Fused(torch.autograd.Function):
    """ψ0 (H, B, D), α, U (H, L, n, 2, 2), e (H, L, D), R (H, K, n, 2, 2) or None, z (D, M) or
    None -> states (T, H, B, D) ["states"], the last (H, B, D) ["last"], or readouts
    (B, T, H, K, M) ["read"]. α is (T, H, B, n, 2), or (B, T, H, n, 2) for "read"."""

    @staticmethod
    def forward(ctx, psi0: Tensor, alpha: Tensor, u: Tensor, e: Tensor, ru: Tensor | None,
                z: Tensor | None, mode: str, every: int, opts: tuple) -> Tensor:
        h, b, d = psi0.shape
        n, lay = u.shape[2], u.shape[1]
        read = mode == "read"
        k, m = (ru.shape[1], z.shape[1]) if read else (0, 0)
        real = alpha.dtype
        dev = psi0.device
        tps, spb = launch_shape(n, h, b, threads_per_sample=opts[0], samples_per_block=opts[1],
                                device=dev)
        fwd, _, shared, smem, _ = _kernels(n, lay, k, m, tps, spb, real == torch.float64, opts[2])
        nb = -(-b // spb)
        if read:  # the kernel runs time-major: (B, T, H, ...) -> (T, H, B, ...)
            alpha = alpha.permute(1, 2, 0, 3, 4)
        cs = torch.stack((alpha.cos(), alpha.sin()), -1).contiguous()  # (T, H, B, n, 2, 2)
        t_len = cs.shape[0]
        if mode == "states":
            every = 1
        keep = torch.empty((t_len // every, h, b, d) if every else (1, 1, 1, 1), dtype=psi0.dtype,
                           device=dev)
        last = torch.empty_like(psi0)
        if read:
            y_t = torch.empty((t_len, h, b, k, m), dtype=real, device=dev)
            rr, zz = _real(ru), z.to(real).contiguous()
        else:
            y_t = torch.empty((1, 1, 1, 1, 1), dtype=real, device=dev)
            rr = torch.zeros((1, 1, 1, 2, 2, 2), dtype=real, device=dev)
            zz = torch.zeros((1, 1), dtype=real, device=dev)
        work = _work(shared, h * nb, 2 if read else 1, spb * d, real, dev)
        _launch(fwd, h * nb, tps * spb, smem, dev, [
            _real(psi0), cs, _real(u), _real(e), rr, zz, _real(keep), _real(last), y_t, nb,
            every, work])
        ctx.mode, ctx.every, ctx.opts = mode, every, opts
        ctx.save_for_backward(cs, u, e, ru if read else None, zz if read else None, last, keep)
        if mode == "states":
            return keep
        return y_t.permute(2, 0, 1, 3, 4).contiguous() if read else last  # (B, T, H, K, M)

    @staticmethod
    def backward(ctx, g_out: Tensor):
        cs, u, e, ru, zz, last, keep = ctx.saved_tensors
        mode, every, opts = ctx.mode, ctx.every, ctx.opts
        read = mode == "read"
        h, b, d = last.shape
        n, lay = u.shape[2], u.shape[1]
        k, m = (ru.shape[1], zz.shape[1]) if read else (0, 0)
        real, dev = cs.dtype, last.device
        tps, spb = launch_shape(n, h, b, threads_per_sample=opts[0], samples_per_block=opts[1],
                                device=dev)
        _, bwd, shared, _, smem = _kernels(n, lay, k, m, tps, spb, real == torch.float64, opts[2])
        nb = -(-b // spb)
        g_last = _real(g_out) if mode == "last" else torch.zeros((1, 1, 1, 2), dtype=real,
                                                                 device=dev)  # (H, B, D, 2)
        g_all = _real(g_out) if mode == "states" else torch.zeros((1, 1, 1, 1, 2), dtype=real,
                                                                  device=dev)  # (T, H, B, D, 2)
        flags = int(mode == "last") + 2 * int(mode == "states")  # bit 0: g_last, bit 1: g_all
        if read:
            gy = g_out.to(real).permute(1, 2, 0, 3, 4).contiguous()  # (T, H, B, K, M)
            rr = _real(ru)
        else:
            gy = torch.zeros((1, 1, 1, 1, 1), dtype=real, device=dev)
            rr = torch.zeros((1, 1, 1, 2, 2, 2), dtype=real, device=dev)
            zz = torch.zeros((1, 1), dtype=real, device=dev)
        g_psi0 = torch.empty_like(last)
        g_alpha = torch.empty(cs.shape[:-1], dtype=real, device=dev)  # (T, H, B, n, 2)
        gu = torch.zeros((h * nb, lay * n, 8), dtype=torch.float64, device=dev)
        ge = torch.zeros((h * nb, lay, d, 2), dtype=torch.float64, device=dev)
        gr = torch.zeros((h * nb, max(1, k * n), 8), dtype=torch.float64, device=dev)
        work = _work(shared, h * nb, 4 if read else 2, spb * d, real, dev)
        _launch(bwd, h * nb, tps * spb, smem, dev, [
            _real(last), g_last, g_all, cs, _real(u), _real(e), rr, zz, gy, _real(keep),
            _real(g_psi0), g_alpha, gu, ge, gr, nb, every, flags, work])
        per_head = lambda g, like: torch.view_as_complex(  # noqa: E731 - (H·nb, ...) -> (H, ...)
            g.view(h, nb, *like.shape[1:], 2).sum(1)).to(like.dtype)
        g_ru = per_head(gr[:, :k * n], ru) if read else None
        if read:
            g_alpha = g_alpha.permute(2, 0, 1, 3, 4).contiguous()  # (B, T, H, n, 2)
        return (g_psi0, g_alpha, per_head(gu, u), per_head(ge, e), g_ru, None, None, None, None)


def _opts(threads_per_sample, samples_per_block, states_in) -> tuple:
    if states_in not in (None, "shared", "global"):
        raise EngineError(f"states_in must be None, 'shared' or 'global', got {states_in!r}")
    return threads_per_sample, samples_per_block, states_in


def _require(psi0: Tensor) -> None:
    why = problem(psi0.device)
    if why:
        raise EngineError(f"fused-gpu: {why}")


def gpu_product_scan(psi0: Tensor, theta: Tensor, a_in: Tensor, off: Tensor, qubits: Tensor,
                     local: Tensor, u: Tensor, e: Tensor, *, all_states: bool = True,
                     anchor_every: int = 0, threads_per_sample: int | None = None,
                     samples_per_block: int | None = None,
                     states_in: str | None = None) -> Tensor:
    """Fused GPU scan, the same function as ``kernels.product_scan``: ψ0 (H, B, D), inputs
    θ (T, H, B, m), input map A (G, m) and offsets o (H, G) giving the angles θ Aᵀ + o of G
    one-qubit diagonal gates on ``qubits`` (G,) with phases per unit angle ``local`` (G, 2);
    U (H, L, n, 2, 2), e (H, L, D) -> states (T, H, B, D), or the last (H, B, D) with backward in
    memory independent of T (``anchor_every`` k > 0 keeps every k-th state to restart from).

    Differentiable in ψ0, θ, A, o, U and e. ``threads_per_sample``, ``samples_per_block`` and
    ``states_in`` ("shared" or "global") override the launch heuristic (``launch_shape``)."""
    _require(psi0)
    real = torch.float64 if psi0.dtype == torch.complex128 else torch.float32
    n = psi0.shape[-1].bit_length() - 1
    alpha = input_angles(theta.to(real), a_in.to(real), off.to(real), qubits, local.to(real), n)
    return _Fused.apply(psi0.contiguous(), alpha.contiguous(), u.to(psi0.dtype),
                        e.to(psi0.dtype), None, None, "states" if all_states else "last",
                        anchor_every, _opts(threads_per_sample, samples_per_block, states_in))


def gpu_product_readout(psi0: Tensor, alpha: Tensor, u: Tensor, e: Tensor, ru: Tensor,
                        z: Tensor, *, anchor_every: int = READ_ANCHOR_EVERY,
                        threads_per_sample: int | None = None,
                        samples_per_block: int | None = None,
                        states_in: str | None = None) -> Tensor:
    """Fused GPU scan with the learned-basis readout at every token: ψ0 (H, B, D), per-qubit
    input phase angles α (B, T, H, n, 2) (token t multiplies amplitude i by
    exp(i Σ_q α[q, bit_q(i)])), U (H, L, n, 2, 2), e (H, L, D), one-qubit query rotations
    R (H, K, n, 2, 2), Z-term signs z (D, M) -> readouts y (B, T, H, K, M), real:

        y[b, t, h, k, c] = Σ_i |((⊗_q R[h, k, q]) ψ_t)_i|² z[i, c]

    No (T, H, B, D) states are kept: backward walks back from every ``anchor_every``-th stored
    state, adding each token's readout gradient as it passes. Differentiable in ψ0, α, U, e, R."""
    _require(psi0)
    real = torch.float64 if psi0.dtype == torch.complex128 else torch.float32
    return _Fused.apply(psi0.contiguous(), alpha.to(real).contiguous(), u.to(psi0.dtype),
                        e.to(psi0.dtype), ru.to(psi0.dtype), z.to(real), "read", anchor_every,
                        _opts(threads_per_sample, samples_per_block, states_in))


def fused_gpu_scan(eng, psi: Tensor, theta: Tensor, w: Tensor, all_states: bool) -> Tensor:
    """The ``KERNELS`` scan of a "fused-gpu" row: ``SequenceEngine`` ``eng`` (its product form,
    dtype and anchor_every), ψ0 (H, B, D), θ (T, H, B, m), weights w (H, P)."""
    ins = eng.product.inputs(w)  # A (G, m), o (H, G), qubits (G,), phases (G, 2)
    u, e = eng.product.unitaries(w, eng.dtype)  # (H, L, n, 2, 2), (H, L, D)
    return gpu_product_scan(psi, theta, *ins, u, e, all_states=all_states,
                            anchor_every=eng.anchor_every)


__all__ = ["READ_ANCHOR_EVERY", "available", "fused_gpu_scan", "gpu_product_readout",
           "gpu_product_scan", "launch_shape", "problem", "simulating"]
