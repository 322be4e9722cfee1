"""Analysis of LoRA runs and sweeps: loading, ranking, diagnosis, plots (the smoothing is runs.smoothing).

Imports no torch and no training code, so it starts fast and runs on a laptop.
"""

from analysis.diagnosis import Diagnosis, diagnose
from analysis.loading import load_runs
from analysis.ranking import Ranking, rank_runs
from analysis.records import AnalysisInputError, LoadResult, RunRecord, Series
from analysis.verdict import verdict_lines

__all__ = [
    "AnalysisInputError",
    "Diagnosis",
    "LoadResult",
    "Ranking",
    "RunRecord",
    "Series",
    "diagnose",
    "load_runs",
    "rank_runs",
    "verdict_lines",
]
