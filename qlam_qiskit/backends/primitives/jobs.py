"""A run folder's ledger of submitted device jobs, so a resumed run collects instead of resubmitting.

Every job sent to an IBM device is recorded in ``jobs.jsonl`` with a key hashed from what it
computes (circuit, observables, parameter values, precision). A run resumed after a dropped
connection replays the same steps from its checkpoint with the same values, finds their keys here
and fetches the finished (or still queued) jobs by id rather than paying for them twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


def job_key(circuit: Any, observables: Sequence[Any], values: np.ndarray,
            precision: float | None) -> str:
    """A content hash of one broadcast PUB: same circuit, observables, values -> same key."""
    h = hashlib.sha256()
    h.update(f"{circuit.name}|{circuit.num_qubits}|{circuit.num_parameters}|{len(circuit.data)}"
             f"|{precision!r}".encode())
    for op in observables:
        h.update(repr(op.to_list()).encode())
    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


class JobLedger:
    """``jobs.jsonl``: one line per submitted job (key, job id, time); lookups by key.

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
                if row.get("key"):
                    self._ids[row["key"]] = row["job_id"]
        self.reused = 0
        """Jobs collected from the ledger instead of being submitted again."""

    def lookup(self, key: str) -> Any | None:
        """The recorded job for ``key`` (retrieved by id), or None if it was never submitted."""
        jid = self._ids.get(key)
        if jid is None or self.retrieve is None:
            return None
        self.reused += 1
        return self.retrieve(jid)

    def record(self, key: str, job: Any) -> None:
        """Append the job's id under ``key`` (flushed before its result is awaited)."""
        row = {"key": key, "job_id": job.job_id(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._ids[key] = row["job_id"]
        with open(self.path, "a") as f:  # append-only: a crash loses at most this line
            f.write(json.dumps(row) + "\n")
