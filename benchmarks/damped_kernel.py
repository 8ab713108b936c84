"""The damped memories' generated kernel at both SIMD widths against the numba kernels it replaced.

    python benchmarks/damped_kernel.py [--threads 2] [--seq 784] [--batch 32] [--rounds 5]

One damped layer of the sMNIST preset (16 memories of 2 qubits, RY·RZ inputs, selective rates,
d_model 32), float32, on random tokens. Three paths, timed in interleaved rounds in this process:
``numba`` (``selective.py``'s kernel and the readout GEMM: the layer off the generated path, the
baseline), and the generated kernel (``damped_fused.py``) at 256 and at 512 bits
(``QLAM_VECTOR_BITS``; where the CPU lacks AVX-512, LLVM splits the 512-bit vectors). For each:
the kernel call alone (``damped_read`` on the layer's stacked inputs), forward and backward, and
the whole layer forward + backward. Medians over rounds, and each path's speed-up over numba.
Last, how close the generated kernel runs to the machine: its arithmetic (the floating-point
operations in the generated code, per lane and token, times lanes, tokens and memories, plus the
readout GEMMs), the rate the kernel calls achieve, and the rate MKL's SGEMM achieves on the
readout's own shape in the same run, the best this CPU does on dense float32 work of that size.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

import torch


def ir_flops(module: str, name: str) -> int:
    """Floating-point operations per lane in the generated function ``name`` of an LLVM module's
    text: a fused multiply-add counts 2, a multiply, add or subtract 1 (each instruction works on
    one vector of lanes, so its count is per lane)."""
    body = re.search(rf'define [^@]*@"?{name}"?\(.*?\n}}', module, re.S).group(0)
    ops = lambda pat: len(re.findall(pat, body))  # noqa: E731
    return 2 * ops(r"call [^@]*@\"?llvm\.fma") + ops(r"= f(?:mul|add|sub) ")


def sgemm_rate(m: int, k: int, n: int, reps: int = 20) -> float:
    """GFLOP/s of a float32 (m, k) @ (k, n) product on this machine (median of ``reps``)."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        runs.append(time.perf_counter() - t0)
    return 2 * m * k * n / statistics.median(runs) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seq", type=int, default=784)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="timed calls per path and round")
    a = p.parse_args()
    os.environ["NUMBA_NUM_THREADS"] = str(a.threads)  # before numba starts (at the import)
    torch.set_num_threads(a.threads)
    import llvmlite.binding as llvm

    from qlam_qiskit.backends.engine import damped_fused
    from qlam_qiskit.models import ModelConfig, QLAMClassifier
    from qlam_qiskit.models.damped import DampedQLAMLayer
    from qlam_qiskit.training.presets import preset

    torch.manual_seed(0)
    cfg = ModelConfig(**preset("smnist", 1)["model"], max_len=a.seq)
    layer = QLAMClassifier(cfg).blocks[0].mixer
    assert isinstance(layer, DampedQLAMLayer)
    x = torch.randn(a.batch, a.seq, cfg.d_model)
    gy = torch.randn(a.batch, a.seq, cfg.d_model)

    def layer_step() -> None:
        layer.zero_grad(set_to_none=True)
        (layer(x) * gy).sum().backward()

    def kernel_calls() -> tuple[float, float]:
        """Seconds of the kernel call forward, then backward, on the layer's own inputs."""
        with torch.no_grad():
            z, rate = layer.lane_inputs(x)
            w, bias = layer.readout_map()
            m = layer.mixing_transfer()
        z.requires_grad_()
        t0 = time.perf_counter()
        y = damped_fused.damped_read(layer.r0, z, m, w, bias, ry=layer.ry, rate=rate)
        t1 = time.perf_counter()
        y.backward(gy.transpose(0, 1))
        return t1 - t0, time.perf_counter() - t1

    generated = DampedQLAMLayer.generated
    paths = {"numba": None, "generated, 256-bit": "256", "generated, 512-bit": "512"}
    times: dict[str, dict[str, list[float]]] = {k: {"fwd": [], "bwd": [], "layer": []}
                                                for k in paths}
    for rnd in range(a.rounds + 1):  # round 0 compiles and warms up: not recorded
        for name, bits in paths.items():
            if bits is None:
                DampedQLAMLayer.generated = lambda self, x_: False
            else:
                DampedQLAMLayer.generated = generated
                os.environ["QLAM_VECTOR_BITS"] = bits
            runs = []
            for _ in range(a.steps):
                t0 = time.perf_counter()
                layer_step()
                runs.append(time.perf_counter() - t0)
            calls = [kernel_calls() for _ in range(a.steps)] if bits is not None else []
            if rnd == 0:
                continue
            times[name]["layer"].append(statistics.median(runs))
            if calls:
                times[name]["fwd"].append(statistics.median(c[0] for c in calls))
                times[name]["bwd"].append(statistics.median(c[1] for c in calls))
    DampedQLAMLayer.generated = generated
    os.environ.pop("QLAM_VECTOR_BITS", None)

    avx512 = damped_fused.vector_bits() == 512  # the CPU's own choice, without the override
    print(f"one damped layer of the sMNIST preset: T={a.seq}, B={a.batch}, {cfg.heads} memories "
          f"of {cfg.qubits} qubits, float32, {a.threads} thread(s), {a.rounds} rounds of "
          f"{a.steps} calls; CPU {'with' if avx512 else 'without'} AVX-512 "
          f"({llvm.get_host_cpu_name()})\n")
    print("| path | kernel forward ms | kernel backward ms | layer fwd+bwd ms | layer × numba |")
    print("|---|---:|---:|---:|---:|")
    med = {k: {q: statistics.median(v[q]) if v[q] else None for q in v}
           for k, v in times.items()}
    base = med["numba"]["layer"]
    for name, m in med.items():
        f = "—" if m["fwd"] is None else f"{m['fwd'] * 1e3:.2f}"
        b = "—" if m["bwd"] is None else f"{m['bwd'] * 1e3:.2f}"
        print(f"| {name} | {f} | {b} | {m['layer'] * 1e3:.1f} | {base / m['layer']:.2f}× |")
    print("\nlayer × numba = the numba path's median ÷ the row's (higher is faster). Rounds "
          "interleave the paths, so a slow phase of the machine hits all of them.")

    # The arithmetic of one kernel call, forward and backward, at the CPU's own width.
    ir = str(damped_fused._generate(cfg.qubits, layer.ry, False, cfg.d_model,
                                    damped_fused.vector_bits()))
    lanes = -(-a.batch // damped_fused.LANES) * damped_fused.LANES * a.seq * cfg.heads
    gemm = 2 * a.batch * a.seq * cfg.heads * 4 ** cfg.qubits * cfg.d_model  # r W, or r dL/dy
    flops = {"fwd": ir_flops(ir, "forward") * lanes + gemm,
             "bwd": ir_flops(ir, "backward") * lanes + gemm}
    own = med[f"generated, {damped_fused.vector_bits()}-bit"]
    peak = sgemm_rate(a.batch * a.seq, cfg.heads * 4 ** cfg.qubits, cfg.d_model)
    rate = sum(flops.values()) / (own["fwd"] + own["bwd"]) / 1e9
    print(f"\nkernel calls' arithmetic: {flops['fwd'] / 1e9:.2f} GFLOP forward, "
          f"{flops['bwd'] / 1e9:.2f} backward (the generated code's floating-point operations, "
          f"{ir_flops(ir, 'forward')} and {ir_flops(ir, 'backward')} per lane and token, and "
          f"the readout GEMMs); achieved {rate:.0f} GFLOP/s, against {peak:.0f} GFLOP/s for "
          f"SGEMM on the readout's shape ({a.batch * a.seq} × {cfg.heads * 4 ** cfg.qubits} × "
          f"{cfg.d_model}) in the same run: {rate / peak:.0%} of it")


if __name__ == "__main__":
    main()
