"""Analysis of LoRA runs and sweeps: smoothing, loading, ranking, diagnosis, plots.

Imports no torch and no training code, so it starts fast and runs on a laptop.
"""

from analysis.diagnosis import Diagnosis, diagnose
from analysis.loading import load_runs
from analysis.ranking import Ranking, rank_runs
from analysis.records import AnalysisInputError, LoadResult, RunRecord, Series
from analysis.smoothing import (
    default_time_constant,
    llamafactory_smooth,
    llamafactory_weight,
    objective_from_metrics,
    time_constant_ema,
    value_at_budget,
)

__all__ = [
    "AnalysisInputError",
    "Diagnosis",
    "LoadResult",
    "Ranking",
    "RunRecord",
    "Series",
    "default_time_constant",
    "diagnose",
    "llamafactory_smooth",
    "llamafactory_weight",
    "load_runs",
    "objective_from_metrics",
    "rank_runs",
    "time_constant_ema",
    "value_at_budget",
]
