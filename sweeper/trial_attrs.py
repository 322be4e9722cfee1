"""The names under which the sweeper keeps its bookkeeping in the study (user attrs), shared by the
loop, the ablation queue and the recovery of abandoned trials, and read by analysis and bench/."""

ABLATION_ATTR = "ablation"  # user attr: the remedy an enqueued trial tries alone, or "baseline"
BASELINE = "baseline"
PROCESS_ATTR = "process"  # user attr: host:pid of the sweep process that runs the trial
REASON_ATTR = "reason"  # user attr: why a trial was pruned or failed
RUN_DIRS_ATTR = "run_dirs"
SPREAD_ATTR = "spread"  # user attr: sample standard deviation of the value over repeats
SEEDS_VALUES_ATTR = "values_per_seed"  # user attr: each repeat's value
UNIT_ATTR = "unit"  # study user attr: what intermediate steps count (samples or tokens), for analysis
ABLATIONS_ENQUEUED_ATTR = "ablations_enqueued"  # study user attr: the ablation was queued once
ENDED_BY_SCHEDULER_ATTR = "ended_by_scheduler"  # user attr: SLURM ended its job; the next sweep command re-runs it
