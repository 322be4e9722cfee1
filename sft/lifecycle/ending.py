"""result.json whatever the end (docs/run_dir.md): a run stopped by bad input, an I/O error, Ctrl-C or
SIGTERM still leaves its status and reason, so a sweeper and `python -m analysis` know what happened."""
from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from runs.files import RESULT_FILE
from runs.result import write_result
from runs.trial import TrialEnded
from sft.lifecycle.errors import TrainingFailed

log = logging.getLogger(__name__)

# what a run refuses or fails with, in words the user can act on: printed as one line, no traceback
# (TrialEnded: a sweep ended the run's trial under it)
USER_ERRORS = (ValueError, TrainingFailed, OSError, TrialEnded)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run (a KeyboardInterrupt, so sweepers stop as they do on Ctrl-C)."""


def reason_of(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return str(error) or "interrupted (Ctrl-C)"
    if isinstance(error, OSError) and not isinstance(error, ValueError):
        return f"I/O error: {error}"
    if not isinstance(error, USER_ERRORS):
        return f"unexpected error, {type(error).__name__}: {error} (the traceback is in the run dir's train.log)"
    return str(error)


@contextmanager
def ending_recorded(run_dir: Path, objective_name: str) -> Iterator[None]:
    """Runs the body with SIGTERM turned into Interrupted; when it raises, result.json gets status
    failed (bad input, I/O error, diverged loss, an unexpected error) or interrupted, with the reason, unless the body
    wrote the run's ending itself. An earlier session's ending is left in place until the recipe has
    read it (sft.recipe.train.run_training: an interrupted one resumes), and replaced if the body fails first."""
    earlier = _written(run_dir)
    previous = _on_sigterm(_raise_interrupted)
    try:
        yield
    except (Exception, KeyboardInterrupt) as error:
        if _written(run_dir) == earlier:
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            _record(run_dir, {"status": status, "reason": reason_of(error), "objective": None, "objective_name": objective_name})
        raise
    finally:
        _on_sigterm(previous)


def _written(run_dir: Path) -> tuple[int, int] | None:
    """Which result.json the run dir holds (inode and mtime: write_result replaces the file), None for none."""
    try:
        written = (run_dir / RESULT_FILE).stat()
    except OSError:
        return None
    return written.st_ino, written.st_mtime_ns


def _record(run_dir: Path, result: dict[str, Any]) -> None:
    try:
        write_result(run_dir, result)
    except OSError as error:  # the disk that failed the run may refuse this too
        log.warning("could not write %s: %s", run_dir / RESULT_FILE, error)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


def _on_sigterm(handler: Any) -> Any:
    """Installs `handler` for SIGTERM and returns the previous one; a no-op outside the main thread
    (a launcher's worker thread cannot take signals)."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return handler
