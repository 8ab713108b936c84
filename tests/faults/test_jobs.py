"""Device jobs that fail or disappear mid-epoch on ibm_<device> (a mocked Runtime service): retried
and recorded, or reported in one line with the job id; ``--resume`` collects every finished job
from the run's ledger instead of paying for it again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit_ibm_runtime.exceptions import RuntimeJobFailureError, RuntimeJobNotFound

from qlam_qiskit.backends.primitives.estimator import aer_estimator
from qlam_qiskit.backends.registry import IBMBackend
from qlam_qiskit.cli.main import main
from faults.harness import assert_same_tensors, load_ckpt, metrics, strip_timing

ARGS = ["run", "--backend", "ibm_test", "--limit-train", 8, "--limit-test", 4, "--batch-size", 4,
        "--qubits", 2, "--d-model", 4, "--patch", 98, "--epochs", 2, "--quiet", "--threads", 1]


class Job:
    """A Runtime job stand-in: its result is computed at submission; the service decides whether
    ``result()`` returns it, fails, or finds the job gone."""

    def __init__(self, service: "Service", jid: str, result, content: str) -> None:
        self.service, self.jid, self._result, self.content = service, jid, result, content

    def job_id(self) -> str:
        return self.jid

    def result(self):
        fate = self.service.fate.get(self.jid)
        if fate == "fail":
            raise RuntimeJobFailureError(f"Unable to retrieve job result. Job {self.jid} failed: "
                                         "Error code 1517; internal error")
        if fate == "vanish":
            raise RuntimeJobNotFound(f"Job not found: {self.jid}")
        self.service.collected.append(self.content)
        return self._result


class Service:
    """Runs PUBs exactly (Aer, statevector); ``plan(n)`` says what happens to the nth job."""

    def __init__(self) -> None:
        self.estimator = aer_estimator()  # exact statevector
        self.jobs: dict[str, Job] = {}
        self.fate: dict[str, str] = {}
        self.plan = lambda n: None
        self.submitted: list[str] = []  # content hash of every job paid for
        self.collected: list[str] = []

    def run(self, pubs, precision=None) -> Job:
        circuit, obs, values = pubs[0]
        content = hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()
                                 + repr([o.to_list() for o in obs.ravel()]).encode()).hexdigest()
        jid = f"job-{len(self.jobs) + 1}"
        result = self.estimator.run(pubs, precision=precision).result()
        job = self.jobs[jid] = Job(self, jid, result, content)
        fate = self.plan(len(self.jobs))
        if fate:
            self.fate[jid] = fate
        self.submitted.append(content)
        return job

    def job(self, jid: str) -> Job:
        if jid not in self.jobs or self.fate.get(jid) == "lost":
            raise RuntimeJobNotFound(f"Job not found: {jid}")
        return self.jobs[jid]

    def reset(self) -> None:
        self.jobs.clear(), self.fate.clear(), self.submitted.clear(), self.collected.clear()
        self.plan = lambda n: None


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """ibm_test: an IBM backend whose service, device (3 qubits) and Estimator are mocked."""
    svc = Service()
    device = GenericBackendV2(num_qubits=3, coupling_map=[[0, 1], [1, 2]], seed=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QLAM_CACHE_DIR", str(tmp_path_factory.mktemp("isa")))
        mp.setattr(IBMBackend, "problem", lambda self: None)
        mp.setattr(IBMBackend, "require", lambda self: self)
        mp.setattr(IBMBackend, "qiskit", property(lambda self: device))
        mp.setattr(IBMBackend, "calibration", property(lambda self: "2026-01-01"))
        mp.setattr(IBMBackend, "service", property(lambda self: svc))
        mp.setattr(IBMBackend, "estimator", lambda self, *a, **k: svc)
        mp.setattr(IBMBackend, "mode", lambda self, kind: None)
        yield svc


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def reference(service, tmp_path_factory):
    """ref(gradient): an uninterrupted run on a service without faults, and what each of its
    jobs computed."""
    done: dict[str, tuple[Path, list[str]]] = {}

    def ref(gradient: str) -> tuple[Path, list[str]]:
        if gradient not in done:
            service.reset()
            out = tmp_path_factory.mktemp("ref") / gradient
            res = run(*ARGS, "--gradient", gradient, "--out", out)
            assert res.exit_code == 0, res.output
            done[gradient] = out, list(service.submitted)
        service.reset()
        return done[gradient]

    return ref


def finished(service: Service) -> list[str]:
    """What every job that finished computed (a lost job finished before it was forgotten)."""
    return sorted(j.content for j in service.jobs.values() if service.fate.get(j.jid) in (None, "lost"))


def same_run(out: Path, ref: Path) -> None:
    assert_same_tensors(strip_timing(load_ckpt(out)), strip_timing(load_ckpt(ref)), "checkpoint")
    assert strip_timing(metrics(out)) == strip_timing(metrics(ref))


def ledger(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]


def test_job_key_ignores_the_circuit_name():
    """A resumed run loads its ISA circuit from the transpile cache under another name: its
    jobs must still be found in the ledger."""
    from qiskit.circuit import Parameter, QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp

    from qlam_qiskit.backends.primitives.jobs import job_key

    qc = QuantumCircuit(2, name="qlam_T2")
    qc.ry(Parameter("a"), 0)
    qc.cz(0, 1)
    other = qc.copy(name="circuit-66")
    obs, values = [SparsePauliOp("ZI")], np.array([[0.3]])
    assert job_key(qc, obs, values, 0.0) == job_key(other, obs, values, 0.0)
    other.rz(0.1, 1)
    assert job_key(qc, obs, values, 0.0) != job_key(other, obs, values, 0.0)


def test_a_job_that_fails_or_vanishes_mid_epoch_is_retried(service, reference, tmp_path):
    ref, contents = reference("shift")
    n_ref = len(contents)
    out = tmp_path / "run"
    late = n_ref * 2 // 3  # in the second epoch
    service.plan = lambda n: {late: "fail", late + 3: "vanish"}.get(n)
    res = run(*ARGS, "--gradient", "shift", "--out", out)
    assert res.exit_code == 0, res.output
    same_run(out, ref)
    assert len(service.submitted) == n_ref + 2  # the two bad jobs, submitted again once each
    assert finished(service) == sorted(contents)
    failed = [r for r in ledger(out) if r.get("failed")]
    assert [r["job_id"] for r in failed] == [f"job-{late}", f"job-{late + 3}"]


@pytest.mark.parametrize("gradient", ["shift", "spsa"])
def test_an_outage_is_one_line_with_the_job_id_and_resume_pays_for_no_job_twice(
        service, reference, tmp_path, gradient):
    ref, contents = reference(gradient)
    out = tmp_path / "run"
    late = len(contents) - 3  # mid second epoch: its first step's jobs have finished
    service.plan = lambda n: "fail" if n >= late else None  # the device stops answering
    res = run(*ARGS, "--gradient", gradient, "--out", out)
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert f"job-{len(service.jobs)}" in lines[0] and f"--resume --out {out}" in lines[0], lines[0]
    assert load_ckpt(out)["epoch"] == 1
    service.plan = lambda n: None  # the device is back
    lost = service.jobs[f"job-{late - 1}"]
    service.fate[lost.jid] = "lost"  # and has forgotten one finished job
    res = run("run", "--resume", "--quiet", "--threads", 1, "--out", out)
    assert res.exit_code == 0, res.output
    same_run(out, ref)
    # every job is paid for once over both runs, but the one the service lost
    assert finished(service) == sorted(contents + [lost.content])
