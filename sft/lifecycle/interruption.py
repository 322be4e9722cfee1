"""Checkpoint and stop when the scheduler says the job must end: SLURM's warning signal before a time
limit (submitit asks for USR2 `signal_delay_s` before it; SUBMITIT_PREEMPT_SIGNAL names another), or the
SIGTERM of a preemption, an scancel or a node shutdown.

A signal handler only notes the signal; the training loop saves a checkpoint at the next log step
(at most trainer.logging_steps optimizer steps later) and stops, so the checkpoint is a consistent state
and the resumed run logs the same points as an uninterrupted one. A signal noted before training started
(sft.lifecycle.stop_signals: train.py notes them from its first line) stops the run before its first step. The
recipe then records status "interrupted" in result.json and hands the signal to whoever handled it
before: under submitit that is its checkpoint hook, which requeues the job; the requeued job finds
"interrupted" in its run dir and resumes from the checkpoint (sft.recipe.train.find_checkpoint), or starts
again where there is none.
"""
from __future__ import annotations

from transformers import TrainerCallback

from sft.lifecycle.stop_signals import SignalNote


class StopOnSignal(SignalNote, TrainerCallback):
    """Once installed (the recipe does so before training), saves a checkpoint and stops training at the
    first log step after one of `signals`.

    The recipe restores the earlier handlers once result.json is written (also when training raised), not
    at the end of training: a signal between the two is only noted, so it cannot cut the saving of the
    adapter or of result.json short (under submitit its handler would requeue the job and exit mid-write,
    leaving no result and a misleading reason)."""

    def on_step_end(self, args, state, control, **kwargs):
        # at a log step, so the resumed run logs the same points (a logged loss averages the steps
        # since the previous log, and that average restarts in a resumed run)
        if self.received is not None and state.global_step % args.logging_steps == 0:
            control.should_save = True
            control.should_training_stop = True

    def reason(self, step: int) -> str:
        return (f"stopped by {self.received.name} at step {step} (a time limit, a preemption or scancel); "
                f"checkpoint-{step} saved, and the same job or command resumes from it")

    def reason_before_training(self, checkpoint: str | None) -> str:
        if checkpoint:
            return (f"stopped by {self.received.name} before training resumed from {checkpoint} (a time limit, "
                    "a preemption or scancel); the same job or command resumes from it")
        return (f"stopped by {self.received.name} before training started (a time limit, a preemption or "
                "scancel); the same job or command starts it again")
