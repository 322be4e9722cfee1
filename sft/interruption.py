"""Checkpoint and stop when the scheduler says the job must end: SLURM's warning signal before a time
limit (submitit asks for USR2 `signal_delay_s` before it; SUBMITIT_PREEMPT_SIGNAL names another), or the
SIGTERM of a preemption, an scancel or a node shutdown.

A signal handler only notes the signal; the training loop saves a checkpoint at the next log step
(at most trainer.logging_steps optimizer steps later) and stops, so the checkpoint is a consistent state
and the resumed run logs the same points as an uninterrupted one. The recipe then records status
"interrupted" in result.json and hands the signal to whoever handled it before: under submitit that is
its checkpoint hook, which requeues the job; the requeued job finds "interrupted" in its run dir and
resumes from the checkpoint (sft.train.find_checkpoint).
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

Handler = Callable[[int, Any], Any] | int | None


def stop_signals() -> list[signal.Signals]:
    """The signals that mean "save and stop": submitit's preemption signal and SIGTERM."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    warning = getattr(signal, f"SIG{name}", signal.SIGUSR2)
    return [warning, signal.SIGTERM]


class StopOnSignal(TrainerCallback):
    """Saves a checkpoint and stops training at the first log step after one of `signals`."""

    def __init__(self, signals: list[signal.Signals]) -> None:
        self.signals = signals
        self.received: signal.Signals | None = None
        self.previous: dict[signal.Signals, Handler] = {}
        self.handed_over: Handler = None  # the earlier handler of the received signal

    def on_train_begin(self, args, state, control, **kwargs):
        for signum in self.signals:
            self.previous[signum] = signal.signal(signum, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum)

    def on_step_end(self, args, state, control, **kwargs):
        # at a log step, so the resumed run logs the same points (a logged loss averages the steps
        # since the previous log, and that average restarts in a resumed run)
        if self.received is not None and state.global_step % args.logging_steps == 0:
            control.should_save = True
            control.should_training_stop = True

    def restore(self) -> None:
        """Put the earlier handlers back. The recipe calls it once result.json is written (also when training
        raised), not at the end of training: a signal between the two is only noted, so it cannot cut the
        saving of the adapter or of result.json short (under submitit its handler would requeue the job and
        exit mid-write, leaving no result and a misleading reason)."""
        if self.received is not None and self.received in self.previous:  # restore() runs twice: keep the first
            self.handed_over = self.previous[self.received]
        for signum, handler in self.previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    def reason(self, step: int) -> str:
        return (f"stopped by {self.received.name} at step {step} (a time limit, a preemption or scancel); "
                f"checkpoint-{step} saved, and the same job or command resumes from it")

    def pass_on(self) -> None:
        """Call the earlier handler of the received signal, if it was a Python one: submitit's checkpoint
        hook requeues the job and exits the process from inside it."""
        if self.received is not None and callable(self.handed_over):
            self.handed_over(int(self.received), None)
