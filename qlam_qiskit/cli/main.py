"""The ``qlam-qiskit`` command group: every command registered on one click group.

Commands live one per module (run, deploy, report, bench); they parse options and call the
library. Shared helpers are in ``common``.
"""

from __future__ import annotations

import click

from ..backends import BACKENDS
from .bench import bench_cmd
from .deploy import account, eval_cmd, export_cmd
from .report import report_cmd
from .run import run_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
