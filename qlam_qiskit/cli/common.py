"""What every command shares: errors shown as one line (signals as conventional exit codes),
device and list parsing."""

from __future__ import annotations

import functools
import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import click

from ..errors import QLAMError
from ..io import storage_error

USER_ERRORS = (QLAMError, ValueError, FileNotFoundError, FileExistsError)
"""Errors a user can cause and fix: shown as one line, exit code 1, no traceback."""


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so a command unwinds as it does on Ctrl-C: nothing
    half-written stays, locks are released, and it exits 143 with one line."""


INTERRUPT_CODES = ((Terminated, 143), (KeyboardInterrupt, 130))
"""Exit codes shells expect: 128 + the signal's number."""


class Failure(click.ClickException):
    """One ``Error: ...`` line on stderr and an exit code (1 unless given)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(err: BaseException) -> click.ClickException:
    """One line for the user, no traceback; an OSError on a file says which file and why."""
    if isinstance(err, OSError) and not isinstance(err, (FileNotFoundError, FileExistsError)):
        err = storage_error(err, err.filename, "use") if err.filename else \
            QLAMError(f"{type(err).__name__}: {err.strerror or err}")
    return Failure(str(err).splitlines()[0] if str(err) else type(err).__name__)


def interrupted(err: BaseException, next_step: str = "") -> click.ClickException:
    """Ctrl-C (exit 130) or SIGTERM (exit 143) as one line, with what to do next."""
    code = next(c for t, c in INTERRUPT_CODES if isinstance(err, t))
    return Failure("interrupted" + (f"; {next_step}" if next_step else ""), code)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: a command's USER_ERRORS and OSErrors become one-line click errors, and an
    interrupt exits 130 (SIGINT) or 143 (SIGTERM) with one line."""

    @functools.wraps(command)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:
            raise  # `| head` closed the pipe: the group exits quietly
        except (*USER_ERRORS, OSError) as err:
            raise fail(err) from None
        except (KeyboardInterrupt, Terminated) as err:
            raise interrupted(err) from None

    return wrapped


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While inside: SIGTERM raises ``Terminated`` in the main thread instead of killing the
    process on the spot (the previous handler is restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
