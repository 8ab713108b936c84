"""The device-job ledger: a resumed run collects jobs it already submitted instead of paying twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp

from qlam_qiskit.backends.primitives.estimator import expectation_values
from qlam_qiskit.backends.primitives.jobs import JobLedger, job_key


class CountingEstimator:
    """A StatevectorEstimator that counts submissions and keeps its jobs by id (a stand-in
    for a Runtime service, offline)."""

    def __init__(self) -> None:
        self.inner, self.runs, self.jobs = StatevectorEstimator(), 0, {}

    def run(self, pubs, precision=None):
        self.runs += 1
        job = self.inner.run(pubs, precision=precision)
        self.jobs[job.job_id()] = job
        return job


def _setup():
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(2, name="cell")
    qc.ry(a, 0)
    qc.cx(0, 1)
    qc.rz(b, 1)
    qc.h(1)
    obs = [SparsePauliOp("ZI"), SparsePauliOp("XZ")]
    values = np.array([[0.1, 0.2], [0.7, -1.3], [2.0, 0.5]])  # (B, P)
    return qc, obs, values


def test_resumed_run_collects_recorded_jobs(tmp_path: Path) -> None:
    qc, obs, values = _setup()
    est = CountingEstimator()
    first = expectation_values(est, qc, obs, values, 0.0,
                               JobLedger(tmp_path / "jobs.jsonl", est.jobs.get))
    assert est.runs == 1 and first.shape == (3, 2)
    # a new process after a dropped connection: same folder, same PUB -> no new submission
    ledger = JobLedger(tmp_path / "jobs.jsonl", est.jobs.get)
    again = expectation_values(est, qc, obs, values, 0.0, ledger)
    assert est.runs == 1 and ledger.reused == 1 and np.array_equal(first, again)
    # anything different is a new job
    expectation_values(est, qc, obs, values + 1e-9, 0.0, ledger)
    expectation_values(est, qc, obs[:1], values, 0.0, ledger)
    assert est.runs == 3 and len((tmp_path / "jobs.jsonl").read_text().splitlines()) == 3


def test_key_tracks_content_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    qc, obs, values = _setup()
    k = job_key(qc, obs, values, 0.0)
    assert k == job_key(qc, obs, values.copy(), 0.0)
    assert k != job_key(qc, obs, values, 0.01) and k != job_key(qc, obs[::-1], values, 0.0)
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"key": "k1", "job_id": "j1", "time": "t"}\n{"key": "k2", "job_')
    seen = []
    ledger = JobLedger(path, lambda jid: seen.append(jid) or jid)
    assert ledger.lookup("k1") == "j1" and ledger.lookup("k2") is None and seen == ["j1"]
    assert JobLedger(path).lookup("k1") is None  # no way to retrieve: submit again
