"""The signals that mean "save and stop" (SLURM's warning before a time limit, a preemption, scancel),
noted from a job's first line: no import of torch or transformers here, so train.py installs the note
before those.

Under submitit the handler in place of USR2 is its checkpoint hook, which requeues the job and exits the
process from inside whatever the job was doing; during an import that left no result.json and a
misleading error ("Could not import module 'TrainerCallback'"). Noted instead, a signal that lands
before training is acted on once the recipe takes over (sft.lifecycle.interruption.StopOnSignal): result.json
says "interrupted" with the signal, and then the signal goes to the handler it would have reached.
"""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Handler = Callable[[int, Any], Any] | int | None

_from_the_start: SignalNote | None = None  # the note that train.py's job installed first thing


def stop_signals() -> list[signal.Signals]:
    """submitit's preemption signal (USR2, or the name in SUBMITIT_PREEMPT_SIGNAL) and SIGTERM."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    warning = getattr(signal, f"SIG{name}", signal.SIGUSR2)
    return [warning, signal.SIGTERM]


class SignalNote:
    """Notes `signals` in place of their handlers, which it puts back and can hand the signal to."""

    def __init__(self, signals: list[signal.Signals]) -> None:
        self.signals = signals
        self.received: signal.Signals | None = None
        self.previous: dict[signal.Signals, Handler] = {}
        self.handed_over: Handler = None  # the earlier handler of the received signal

    def install(self) -> None:
        """Note the signals from now on. Where the note of the job's start stands, this one takes over
        from it: a signal it noted counts as received here, and the handler it stood in for (submitit's)
        is the one to put back and hand over to."""
        early = _from_the_start
        for signum in self.signals:
            before = signal.signal(signum, self._note)
            if early is not None and before == early._note:
                before = early.previous.get(signum, before)
            self.previous[signum] = before
        if early is not None and self.received is None:
            self.received = early.received

    def _note(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    def restore(self) -> None:
        """Put the earlier handlers back (a second call changes nothing)."""
        if self.received is not None and self.received in self.previous:
            self.handed_over = self.previous[self.received]
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    def pass_on(self) -> None:
        """Call the earlier handler of the received signal, if it was a Python one: submitit's checkpoint
        hook requeues the job and exits the process from inside it."""
        if self.received is not None and callable(self.handed_over):
            self.handed_over(int(self.received), None)


@contextmanager
def noted_from_the_start() -> Iterator[SignalNote]:
    """A job's body: stop signals are only noted until the recipe takes over (or the body ends, when the
    earlier handlers come back). Outside the main thread, where no handler can be set, nothing is noted."""
    global _from_the_start
    note = SignalNote(stop_signals())
    if threading.current_thread() is not threading.main_thread():
        yield note
        return
    note.install()
    _from_the_start = note
    try:
        yield note
    finally:
        _from_the_start = None
        note.restore()
