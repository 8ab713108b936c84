"""What every command shares: errors shown as one line, device and list parsing."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from ..errors import QLAMError

USER_ERRORS = (QLAMError, ValueError, FileNotFoundError, FileExistsError)
"""Errors a user can cause and fix: shown as one line, exit code 1, no traceback."""


def fail(err: BaseException) -> click.ClickException:
    """One line for the user, no traceback."""
    return click.ClickException(str(err).splitlines()[0] if str(err) else type(err).__name__)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: a command's USER_ERRORS become one-line click errors."""

    @functools.wraps(command)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as err:
            raise fail(err) from None

    return wrapped


def check_device(device: str) -> None:
    """Refuse a torch device this machine does not have, with the fix."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise QLAMError(f"--device {device}: no CUDA device is visible to torch here; "
                        "use --device cpu or install a CUDA build of torch")
    torch.device(device)  # raises on malformed names


def int_list(text: str | None, what: str, low: int | None = None, high: int | None = None,
             example: str = "1,2") -> tuple[int, ...] | None:
    """'1,4,16' -> (1, 4, 16), each in [low, high]; None stays None; else a one-line error."""
    if text is None:
        return None
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or (low is not None and min(vals) < low) or (high is not None and max(vals) > high):
        rng = "" if low is None else (f" >= {low}" if high is None else f" in {low}..{high}")
        raise QLAMError(f"{what} {text!r}: give comma-separated integers{rng}, e.g. {what} "
                        f"{example}")
    return vals


def name_list(text: str | None, allowed: tuple[str, ...], what: str) -> tuple[str, ...] | None:
    """'a,b' -> ('a', 'b'), each checked against ``allowed``; None stays None."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    bad = [v for v in names if v not in allowed]
    if bad or not names:
        raise QLAMError(f"{what} {', '.join(bad) or repr(text)}: choose from "
                        f"{', '.join(allowed)} (comma-separated for several)")
    return names
