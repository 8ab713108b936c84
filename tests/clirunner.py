"""Run the qlam-qiskit CLI in-process for tests: ``invoke`` returns click's result, ``ok`` also
asserts it exited 0 (showing the output and exception when it did not)."""

from __future__ import annotations

from click.testing import CliRunner, Result

from qlam_qiskit.cli.main import main


def invoke(*args, env: dict | None = None) -> Result:
    """``qlam-qiskit ARGS...`` (each argument str()-ed), with extra environment ``env``."""
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def ok(*args, env: dict | None = None) -> Result:
    """``invoke`` that must succeed."""
    res = invoke(*args, env=env)
    assert res.exit_code == 0, (res.output, res.exception)
    return res
