"""Hardware-aware entanglement: a ring (or path) of n physically coupled qubits of a device.

A ring of 6 on heavy-hex costs ~20 CZ per step through SWAPs; pairs that follow native couplings
cost one two-qubit gate each. ``coupling_chain`` picks n connected qubits with the lowest summed
two-qubit error, closing the chain into a ring when the device has such a cycle.
"""

from __future__ import annotations

from typing import Any

from ...errors import BackendError


def _edges(target: Any) -> dict[tuple[int, int], float]:
    """Undirected couplings of a Qiskit Target -> the lowest two-qubit gate error on them."""
    out: dict[tuple[int, int], float] = {}
    for name in target.operation_names:
        props = target[name]
        for qs, p in (props or {}).items():
            if qs is None or len(qs) != 2:
                continue
            key = (min(qs), max(qs))
            err = p.error if p is not None and p.error is not None else 0.0
            out[key] = min(out.get(key, err), err)
    return out


def coupling_chain(target: Any, n: int) -> tuple[tuple[int, ...], bool]:
    """n device qubits forming a ring if possible, else a path, with the lowest total error.

    Returns (physical qubits in chain order, is_ring). Raises ValueError if none exists.
    """
    edges = _edges(target)
    adj: dict[int, list[int]] = {}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)

    def cost(a: int, b: int) -> float:
        return edges[(min(a, b), max(a, b))]

    best: dict[bool, tuple[float, tuple[int, ...]]] = {}
    for start in sorted(adj):
        stack = [(start,)]
        while stack:
            path = stack.pop()
            if len(path) == n:
                s = sum(cost(a, b) for a, b in zip(path, path[1:]))
                ring = n > 2 and path[0] in adj[path[-1]]
                if ring:
                    s += cost(path[0], path[-1])
                if ring not in best or s < best[ring][0]:
                    best[ring] = (s, path)
                continue
            stack.extend(path + (q,) for q in adj[path[-1]] if q not in path)
    if n == 1:
        return (min(adj) if adj else 0,), False
    if True in best:
        return best[True][1], True
    if False in best:
        return best[False][1], False
    raise BackendError(f"the device has no {n} connected qubits; use fewer --qubits")


def chain_pairs(n: int, ring: bool) -> tuple[tuple[int, int], ...]:
    """Entangling pairs of template qubits 0..n-1 along the chain (closing it when ``ring``)."""
    pairs = tuple((q, q + 1) for q in range(n - 1))
    return pairs + ((n - 1, 0),) if ring and n > 2 else pairs
