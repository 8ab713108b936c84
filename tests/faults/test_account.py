"""``account save``: a named account beside an existing default, and an accounts file only its
owner can read."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from qlam_qiskit.cli.main import main

TOKEN = "tok-" + "a7" * 20


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    from qlam_qiskit.backends.primitives import devices

    monkeypatch.setattr(devices.socket, "create_connection",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(101, "unreachable")))


def save(*args, token=TOKEN):
    return CliRunner().invoke(main, ["account", "save", *map(str, args)],
                              env={"QISKIT_IBM_TOKEN": token})


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_named_account_beside_a_default_one(tmp_path):
    acc = tmp_path / "qiskit" / "accounts.json"
    res = save("--filename", acc)
    assert res.exit_code == 0, res.output
    res = save("--filename", acc, "--name", "work", token=TOKEN + "w")
    assert res.exit_code == 0, res.output
    assert "work" in res.stdout and "default" in res.stdout
    data = json.loads(acc.read_text())
    assert data["work"]["token"] == TOKEN + "w" and not data["work"].get("is_default_account")
    default = [k for k, v in data.items() if v.get("is_default_account")]
    assert len(default) == 1 and data[default[0]]["token"] == TOKEN  # the default is kept
    assert TOKEN not in res.output


def test_first_named_account_becomes_the_default(tmp_path):
    acc = tmp_path / "accounts.json"
    res = save("--filename", acc, "--name", "work")
    assert res.exit_code == 0, res.output
    assert json.loads(acc.read_text())["work"]["is_default_account"] is True


def test_the_accounts_file_is_readable_by_its_owner_only(tmp_path):
    acc = tmp_path / "new" / "accounts.json"
    assert save("--filename", acc).exit_code == 0
    assert mode(acc) == 0o600 and mode(acc.parent) == 0o700
    old = tmp_path / "old.json"
    old.write_text("{}")
    old.chmod(0o644)  # written by an earlier version, world-readable
    assert save("--filename", old).exit_code == 0
    assert mode(old) == 0o600
