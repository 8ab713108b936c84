"""Data layer: image data sets read as pixel sequences for QLAM sequence classification."""

from .idx import DataError
from .tasks import DATA_ENV, DEFAULT_TASK, PSMNIST_PERMUTATION, TASKS, TaskData, load_task
from .spec import DataSpec

__all__ = ["DATA_ENV", "DEFAULT_TASK", "PSMNIST_PERMUTATION", "TASKS", "DataError", "DataSpec", "TaskData",
           "load_task"]
