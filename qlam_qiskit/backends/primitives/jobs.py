"""A run folder's ledger of submitted device jobs, so a resumed run collects instead of resubmitting.

Every job sent to an IBM device is recorded in ``jobs.jsonl`` with a key hashed from what it
computes (circuit, observables, parameter values, precision). A run resumed after a dropped
connection replays the same steps from its checkpoint with the same values, finds their keys here
and fetches the finished (or still queued) jobs by id rather than paying for them twice.

A job that fails, or that the service no longer knows, is marked failed in the ledger and
submitted again, up to ``JOB_TRIES`` submissions per result; then the run stops with one line
naming the last job's id (a resumed run submits it afresh, and collects every finished job).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import BackendError

JOB_TRIES = 3
"""Submissions of one PUB before its failures stop the run."""


def job_key(circuit: Any, observables: Sequence[Any], values: np.ndarray,
            precision: float | None) -> str:
    """A content hash of one broadcast PUB: same circuit, observables, values -> same key.

    The circuit counts by its gates, qubits and parameter names, never by its name: a circuit
    loaded from the transpile cache in a resumed run is named differently from the one its
    first run transpiled, and must find the same jobs."""
    h = hashlib.sha256()
    h.update(f"{circuit.num_qubits}|{circuit.num_parameters}|{precision!r}".encode())
    for ins in circuit.data:
        h.update(f"{ins.operation.name}{[circuit.find_bit(q).index for q in ins.qubits]}"
                 f"{[str(p) for p in ins.operation.params]};".encode())
    for op in observables:
        h.update(repr(op.to_list()).encode())
    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


def _reason(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}{': ' + text[:160] if text else ''}"


class JobLedger:
    """``jobs.jsonl``: one line per submitted job (key, job id, time), and one per job that
    failed (key, job id, failed: the reason); lookups by key.

    ``retrieve(job_id)`` returns a job object with ``.result()`` (e.g. ``service.job``).
    """

    def __init__(self, path: Path, retrieve: Callable[[str], Any] | None = None) -> None:
        self.path, self.retrieve = Path(path), retrieve
        self._ids: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash mid-append: skip it
                    continue
                if not isinstance(row, dict) or not row.get("key"):
                    continue
                if row.get("failed"):
                    if self._ids.get(row["key"]) == row.get("job_id"):
                        del self._ids[row["key"]]
                elif row.get("job_id"):
                    self._ids[row["key"]] = row["job_id"]
        self.reused = 0
        """Jobs collected from the ledger instead of being submitted again."""
        self.retried = 0
        """Jobs submitted again after one failed or vanished."""

    def lookup(self, key: str) -> Any | None:
        """The recorded job for ``key`` (retrieved by id), or None if it was never submitted,
        failed, or the service no longer has it."""
        jid = self._ids.get(key)
        if jid is None or self.retrieve is None:
            return None
        try:
            job = self.retrieve(jid)
        except Exception as err:  # noqa: BLE001 - gone (expired, deleted): submit it again
            self.failed(key, jid, _reason(err))
            return None
        self.reused += 1
        return job

    def record(self, key: str, job: Any) -> None:
        """Append the job's id under ``key`` (flushed before its result is awaited)."""
        row = {"key": key, "job_id": job.job_id(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._ids[key] = row["job_id"]
        self._append(row)

    def failed(self, key: str, job_id: str, reason: str) -> None:
        """Mark ``job_id`` failed: a later lookup of ``key`` submits it again."""
        if self._ids.get(key) == job_id:
            del self._ids[key]
        self._append({"key": key, "job_id": job_id, "failed": reason,
                      "time": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def _append(self, row: dict) -> None:
        with open(self.path, "a") as f:  # append-only: a crash loses at most this line
            f.write(json.dumps(row) + "\n")

    def collect(self, key: str, submit: Callable[[], Any]) -> Any:
        """The result for ``key``: the recorded job's, else a new job's (recorded before it is
        awaited). A job that fails or vanishes is submitted again, ``JOB_TRIES`` times in all;
        then a BackendError naming the last job."""
        job, tries, last, why = self.lookup(key), 0, "", ""
        while True:
            if job is None:
                if tries == JOB_TRIES:
                    raise BackendError(f"device job {last} failed {tries} times ({why}); finished "
                                       f"jobs are kept in {self.path} and are not paid for again")
                try:
                    job = submit()
                except Exception as err:  # noqa: BLE001 - the service refused or is unreachable
                    raise BackendError(f"could not submit a device job ({_reason(err)}); finished "
                                       f"jobs are kept in {self.path} and are not paid for "
                                       "again") from None
                tries += 1
                self.retried += tries > 1
                self.record(key, job)
            try:
                return job.result()
            except Exception as err:  # noqa: BLE001 - failed, cancelled, lost: try again
                last, why = job.job_id(), _reason(err)
                self.failed(key, last, why)
                job = None
