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
from sft.errors import TrainingFailed

log = logging.getLogger(__name__)

# what a run refuses or fails with, in words the user can act on: printed as one line, no traceback
USER_ERRORS = (ValueError, TrainingFailed, OSError)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run (a KeyboardInterrupt, so sweepers stop as they do on Ctrl-C)."""


def reason_of(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return str(error) or "interrupted (Ctrl-C)"
    if isinstance(error, OSError) and not isinstance(error, ValueError):
        return f"I/O error: {error}"
    return str(error)


@contextmanager
def ending_recorded(run_dir: Path, objective_name: str) -> Iterator[None]:
    """Runs the body with SIGTERM turned into Interrupted; when it raises, result.json gets status
    failed (bad input, I/O error, diverged loss) or interrupted, with the reason, unless the body
    already wrote the run's ending."""
    (run_dir / RESULT_FILE).unlink(missing_ok=True)  # a resumed run dir may hold an earlier ending
    previous = _on_sigterm(_raise_interrupted)
    try:
        yield
    except (*USER_ERRORS, KeyboardInterrupt) as error:
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        _record(run_dir, {"status": status, "reason": reason_of(error), "objective": None, "objective_name": objective_name})
        raise
    finally:
        _on_sigterm(previous)


def _record(run_dir: Path, result: dict[str, Any]) -> None:
    if (run_dir / RESULT_FILE).is_file():
        return
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
