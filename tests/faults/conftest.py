"""Fixtures of the fault suite (helpers in harness.py). Every test under tests/faults/ carries the
``faults`` marker: ``python -m pytest -m faults`` runs the suite alone.

The zygote (a warm process that forks ``qlam-qiskit`` processes) starts as soon as collection
has selected a test that needs it, so it warms up while other tests run; those tests run last.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faults.harness import Zygote

HERE = Path(__file__).resolve().parent
_zygote: list[Zygote] = []


def _here(item) -> bool:
    return HERE in Path(str(item.fspath)).parents


def pytest_collection_modifyitems(items):
    mine = [i for i, item in enumerate(items) if _here(item)]
    for i in mine:
        items[i].add_marker(pytest.mark.faults)
    block = sorted((items[i] for i in mine), key=lambda it: "zygote" in it.fixturenames)
    for i, item in zip(mine, block):  # in-process tests first, while the zygote warms up
        items[i] = item


def pytest_collection_finish(session):
    if hasattr(os, "fork") and any(_here(it) and "zygote" in it.fixturenames
                                   for it in session.items):
        _zygote.append(Zygote())


def pytest_sessionfinish(session):
    while _zygote:
        _zygote.pop().close()


@pytest.fixture(scope="session")
def zygote():
    if not _zygote:
        pytest.skip("the fault suite forks processes (POSIX only)")
    _zygote[0].ready()
    return _zygote[0]
