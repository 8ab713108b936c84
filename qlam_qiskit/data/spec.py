"""What a run records about its data, so resume, eval and export load exactly the same sequences."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from .patch import patch_tokens
from .tasks import TaskData, load_task


@dataclass(frozen=True)
class DataSpec:
    """How a run reads its task: the ``load_task`` options plus patching into tokens."""

    task: str
    data_dir: str | os.PathLike | None = None
    gray: bool = False
    downsample: int = 1
    patch: int | None = None
    limit_train: int | None = None
    limit_test: int | None = None

    def load(self, seed: int) -> TaskData:
        """The task's train/val/test sequences (the seed fixes the validation split and test subset)."""
        data = load_task(self.task, self.data_dir, gray=self.gray, limit_train=self.limit_train,
                         limit_test=self.limit_test, seed=seed, downsample=self.downsample)
        return patch_tokens(data, self.patch) if self.patch else data

    def record(self, data: TaskData) -> dict:
        """The checkpoint's "data" entry: these options plus the loaded data's shape and statistics."""
        return {"task": self.task, "data_dir": str(self.data_dir) if self.data_dir else None,
                "gray": self.gray, "downsample": self.downsample, "limit_train": self.limit_train,
                "limit_test": self.limit_test, "patch": self.patch, "seq_len": data.seq_len,
                "mean": list(data.mean), "std": list(data.std),
                "class_names": list(data.class_names)}

    @classmethod
    def from_record(cls, d: dict, **override) -> DataSpec:
        """Read a checkpoint's "data" entry back (older ones lack downsample and patch); options
        given in ``override`` and not None replace the recorded ones."""
        spec = cls(d["task"], d.get("data_dir"), d["gray"], d.get("downsample", 1), d.get("patch"),
                   d["limit_train"], d["limit_test"])
        return replace(spec, **{k: v for k, v in override.items() if v is not None})
