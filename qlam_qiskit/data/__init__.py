"""Data layer: image data sets read as pixel sequences for QLAM sequence classification."""

from ..errors import DataError
from .tasks import (DATA_ENV, DEFAULT_TASK, PSMNIST_PERMUTATION, TASK_INFO, TASKS, TaskData,
                    TaskInfo, load_task)
from .spec import DataSpec

__all__ = ["DATA_ENV", "DEFAULT_TASK", "PSMNIST_PERMUTATION", "TASK_INFO", "TASKS", "TaskInfo", "DataError", "DataSpec", "TaskData",
           "load_task"]
