"""The Optuna user-attr keys the sweeper writes and the analysis reads."""
from __future__ import annotations

# a trial's user attrs
ABLATION = "ablation"  # the remedy an enqueued trial tries alone, or BASELINE
BASELINE = "baseline"
OVERRIDES = "overrides"  # the trial's overrides that re-run it (no sweeper plumbing)
PROCESS = "process"  # host:pid of the sweep process that runs the trial
REASON = "reason"  # why a trial was pruned or failed
RUN_DIRS = "run_dirs"  # the run dir of each repeat
RUN_DIR = "run_dir"  # a single run dir, as other tools name it
SPREAD = "spread"  # sample standard deviation of the value over repeats, per objective
VALUES_PER_SEED = "values_per_seed"  # each repeat's value(s)
ENDED_BY_SCHEDULER = "ended_by_scheduler"  # SLURM ended its job; the next sweep command re-runs it
COPY_OF = "copy_of"  # the earlier trial with the same overrides whose result this one took, not trained again
EVAL_LOSS = "eval_loss"
# [[first sample, end sample, mean training loss, fingerprint of the ids trained so far], ...], one per
# report: the losses the racing pruner pairs between trials of the same sample stream
PAIRED_LOSSES = "paired_losses"
RACE = "race"  # the racing pruner's decision on a trial it stopped (sweeper.racing.RaceVerdict's fields)

# a trial's system attrs
LEASE = "lease_renewed_at"  # when the owning sweep process last renewed its lease (epoch s)

# a study's user attrs
UNIT = "unit"  # what intermediate steps count (samples or tokens)
DATA = "data"  # the data the study's trials train on (sweeper.data_binding): a later sweep must compose the same
