"""The training side of pruning: one job's handle on its Optuna trial.

train.py builds it with `hydra.utils.instantiate(cfg.trial)` from the node the sweeper put in the job's
environment (sweeper.storage.TRIAL_ENV); it works the same in the sweeper's process (basic launcher) and
in a worker (joblib, submitit), because it reaches the trial through the storage rather than through memory.
A job that outlived its sweep process may find its trial ended under it (failed by the next sweep
process, and queued again): it stops with runs.trial.TrialEnded, which training records in result.json.
"""
from __future__ import annotations

import optuna
from optuna.pruners import BasePruner, NopPruner

from runs import attrs
from runs.storage import process_storage
from runs.trial import TrialEnded
from sweeper.storage import storage_url_from_env


class TrialReporter:
    """Reports the smoothed loss at a step counted in samples (or tokens) seen and asks the pruner.

    The pruner is not kept in the storage, so the sweeper passes its config and this side builds the
    same one. With repeats, only the first seed reports (one curve per trial), and every seed stops
    when the pruner stops the trial.
    """

    def __init__(
        self, study_name: str, trial_id: int, pruner: BasePruner | None = None, report_values: bool = True
    ) -> None:
        study = optuna.load_study(
            study_name=study_name,
            storage=process_storage(storage_url_from_env()),
            pruner=pruner if pruner is not None else NopPruner(),
            # never samples; a passive sampler keeps Trial() from touching sampler state (grid ids)
            sampler=optuna.samplers.RandomSampler(),
        )
        self._trial = optuna.trial.Trial(study, trial_id)
        self._report_values = report_values
        self._paired: list[list] = list(self._trial.user_attrs.get(attrs.PAIRED_LOSSES, []))

    def report(self, value: float, step: int, interval: tuple[int, int, float, str] | None = None) -> None:
        """The value as the trial's intermediate value; the interval's loss appended to the user attr
        attrs.PAIRED_LOSSES, where the racing pruner reads it (from any host: it is in the storage). Stops
        the run (TrialEnded) when the trial was ended under this job: a repeat that reports no values asks
        the storage for the trial's state instead."""
        if not self._report_values:
            self._check_running()
            return
        try:
            self._trial.report(float(value), int(step))
        except optuna.exceptions.UpdateFinishedTrialError:
            self._check_running()
            raise
        if interval is not None:
            self._paired.append([int(interval[0]), int(interval[1]), float(interval[2]), str(interval[3])])
            self._trial.set_user_attr(attrs.PAIRED_LOSSES, self._paired)

    def _check_running(self) -> None:
        trial = self._trial.study._storage.get_trial(self._trial._trial_id)
        if trial.state.is_finished():
            raise TrialEnded(
                f"trial {trial.number} was ended ({trial.state.name}) while this job ran: "
                f"{trial.user_attrs.get(attrs.REASON) or 'by another sweep process'}; this run stopped"
            )

    def should_prune(self) -> bool:
        return self._trial.should_prune()
