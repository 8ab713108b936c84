"""The ``qlam-qiskit`` command group: every command registered on one click group.

Commands live one per module (run, deploy, report, bench); they parse options and call the
library. Shared helpers are in ``common``.

Every failure a user can cause is one ``Error: ...`` line on stderr with a non-zero exit code:
our own errors exit 1, usage errors (a bad option) exit 2 with the help hint on the same line,
Ctrl-C exits 130 and SIGTERM 143.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

import click

from ..backends import BACKENDS
from .bench import bench_cmd
from .common import Terminated, interrupted, sigterm_unwinds
from .deploy import account, eval_cmd, export_cmd
from .report import report_cmd
from .run import run_cmd


class OneLineGroup(click.Group):
    """A click group whose standalone errors are each one stderr line (click prints usage
    errors as three: usage, hint, error)."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        code = 0
        with sigterm_unwinds():
            try:
                rv = super().main(args, prog_name, complete_var, False, **extra)
                code = rv if isinstance(rv, int) else 0  # ctx.exit(n), e.g. --help
            except click.UsageError as e:
                hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
                click.echo(f"Error: {e.format_message()}{hint}", err=True)
                code = e.exit_code
            except click.ClickException as e:
                e.show()
                code = e.exit_code
            except (click.Abort, KeyboardInterrupt, Terminated) as e:
                cause = e.__cause__ if isinstance(e, click.Abort) else e
                if isinstance(cause, EOFError):
                    click.echo("Error: no input (end of file)", err=True)
                    code = 1
                else:
                    err = interrupted(cause if isinstance(cause, Terminated) else KeyboardInterrupt())
                    err.show()
                    code = err.exit_code
            except OSError as e:
                if e.errno != errno.EPIPE:  # a closed pipe (`| head`) is not an error
                    raise
                code = 1
        sys.exit(code)


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qlam-qiskit")
def main() -> None:
    """QLAM: quantum recurrent sequence models on Qiskit."""


@main.command("backends")
def backends_cmd() -> None:
    """List the backends and what each needs."""
    for cls in BACKENDS:
        click.echo(f"{cls.pattern:14s} {cls.summary}\n{'':14s} needs: {cls.needs}; "
                   f"{cls(cls.pattern).status()}")


for _cmd in (run_cmd, eval_cmd, export_cmd, account, report_cmd, bench_cmd):
    main.add_command(_cmd)
