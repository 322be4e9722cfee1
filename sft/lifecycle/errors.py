"""The errors a user can fix. Each message names the problem and what to change; train.py prints
them without a traceback and records them in result.json. ConfigError is the schema's (runs.errors): a
setting refused before training and one refused by training are the same error."""

from runs.errors import ConfigError

__all__ = ["ConfigError", "DataError", "TrainingFailed", "TrainingInterrupted"]


class DataError(ValueError):
    """A missing file, an unknown dataset name, malformed rows, or rows left with nothing to train on."""


class TrainingFailed(RuntimeError):
    """Training stopped without a usable result (a NaN/inf loss); result.json already says why."""


class TrainingInterrupted(TrainingFailed):
    """A signal stopped training after a checkpoint (time limit, preemption); result.json says
    "interrupted", and running the same job again into the same run dir resumes."""
