"""Damped-memory scan: the numba kernel against its plain-autograd reference, forward + backward.

    python benchmarks/transfer_scan.py [--threads 1] [--seq 784] [--qubits 2] [--repeats 3]
                                       [--previous DIR]

Prints seconds per forward+backward of ``rz_transfer_scan`` and ``rz_transfer_scan_ref`` on the
same inputs (H = 16 memories, B = 32 samples, float32) and their ratio, with the thread count.
``--previous DIR`` also times DIR's kernel (another checkout, ``git worktree add DIR <commit>``)
in a process of its own on the same inputs, and prints the speed-up over it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch


def timed(fn, r0, theta, s, repeats: int) -> float:
    """Median seconds of one forward + backward."""
    times = []
    for _ in range(repeats + 1):  # the first call compiles (kernel) or warms up (reference)
        th, sm = theta.clone().requires_grad_(), s.clone().requires_grad_()
        t0 = time.perf_counter()
        fn(r0, th, sm).square().sum().backward()
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seq", type=int, default=784)
    p.add_argument("--qubits", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--previous", default=None, metavar="DIR")
    p.add_argument("--kernel-only", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    os.environ["NUMBA_NUM_THREADS"] = str(a.threads)  # before numba starts (at the import)
    torch.set_num_threads(a.threads)
    from qlam_qiskit.backends.engine.transfer import (plus_state, rz_transfer_scan,
                                                      rz_transfer_scan_ref)
    g = torch.Generator().manual_seed(0)
    n, h, b = a.qubits, 16, 32
    theta = 0.1 * torch.randn(a.seq, b, h, n, generator=g)
    s = torch.linalg.qr(torch.randn(h, 4**n, 4**n, generator=g))[0] * 0.99  # contractive
    r0 = plus_state(n, torch.float32)
    fast = timed(rz_transfer_scan, r0, theta, s, a.repeats)
    if a.kernel_only:  # the --previous worker: one number
        print(fast)
        return
    prev = None
    if a.previous:
        args = [sys.executable, __file__, "--kernel-only", "--threads", str(a.threads), "--seq",
                str(a.seq), "--qubits", str(n), "--repeats", str(a.repeats)]
        env = {**os.environ, "PYTHONPATH": os.path.abspath(a.previous)}
        prev = float(subprocess.run(args, env=env, capture_output=True, text=True, check=True,
                                    cwd=a.previous).stdout.split()[-1])
    ref = timed(rz_transfer_scan_ref, r0, theta, s, a.repeats)
    print(f"threads {a.threads} (torch {torch.get_num_threads()}), T={a.seq}, H={h}, B={b}, "
          f"n={n} ({4**n} reals per memory), load average {os.getloadavg()[0]:.2f}")
    print(f"kernel    {fast:.3f} s per forward+backward")
    if prev is not None:
        print(f"previous  {prev:.3f} s per forward+backward ({a.previous})")
    print(f"reference {ref:.3f} s per forward+backward")
    print(f"kernel is {ref / fast:.1f}x faster than the reference"
          + (f", {prev / fast:.1f}x faster than the previous kernel" if prev else ""))


if __name__ == "__main__":
    main()
