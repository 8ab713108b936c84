"""Patch tokens: P consecutive pixels per token, so a sequence of T pixels becomes T/P tokens.

Shorter sequences are the cheapest lever for circuits run on primitives: circuit depth, parameter
occurrences and parameter-shift cost all scale with the number of tokens.
"""

from __future__ import annotations

from dataclasses import replace

from .idx import DataError
from .tasks import TaskData


def patch_tokens(data: TaskData, patch: int) -> TaskData:
    """Regroup (N, T, C) sequences into (N, T/P, P·C) tokens of P consecutive pixels."""
    t, c = data.seq_len, data.channels
    if patch < 1 or t % patch:
        divisors = [d for d in range(1, t + 1) if t % d == 0]
        raise DataError(f"--patch {patch} does not divide the sequence length {t}; "
                        f"choose one of {divisors}")
    if patch == 1:
        return data

    def group(x):  # (N, T, C) -> (N, T/P, P*C)
        return x.reshape(x.shape[0], t // patch, patch * c)

    return replace(data, x_train=group(data.x_train), x_val=group(data.x_val),
                   x_test=group(data.x_test))
