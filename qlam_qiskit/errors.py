"""The errors a user can cause, one class per layer; the CLI prints any of them as one line.

Every one is a ``ValueError`` so library callers that already catch bad values keep working.
"""

from __future__ import annotations


class QLAMError(ValueError):
    """A user-facing problem, with the reason and the way forward in its first line."""

    def __init__(self, message: str = "") -> None:
        super().__init__(" ".join(str(message).split()))


class DataError(QLAMError):
    """A data file or folder that cannot be read as the task needs, naming the file and the fix."""


class EngineError(QLAMError):
    """A circuit the exact engine cannot run, with the reason and what to change."""


class BackendError(QLAMError):
    """A backend that cannot be used here, with what is missing and how to get it."""


class CheckpointError(QLAMError):
    """A checkpoint that is missing, unreadable or not a qlam-qiskit run."""


class StorageError(QLAMError):
    """A file or folder that cannot be written: disk full, no permission, read-only, too little
    free space, or a run folder another live run holds; names the path and the fix."""
