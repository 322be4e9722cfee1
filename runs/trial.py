"""The job's side of a sweep's trial, as training sees it without importing the sweeper."""
from __future__ import annotations


class TrialEnded(RuntimeError):
    """The trial this job reports to was ended by a sweep process while the job ran (its driver was
    stopped, or its lease expired, and its parameters were queued again). The run stops at once and
    records the message as the reason in result.json, status failed: a later sweep neither adopts it
    nor waits for it."""
