"""The racing pruner on synthetic curves with known gaps and noise, in a real in-memory Optuna study."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import optuna
import pytest
from conftest import ROOT, run_train
from optuna.trial import TrialState

from runs import attrs
from sweeper.racing import RacingPruner, paired_curve, t_quantile

REPORT = 40  # samples between reports
REPORTS = 8
STREAM = "stream-a"


def shared_noise(seed: int = 0) -> list[float]:
    """The samples' own difficulty: the same for every trial on the stream, so pairing cancels it."""
    generator = random.Random(seed)
    return [generator.gauss(0.0, 0.3) for _ in range(REPORTS)]


def intervals(gap: float, noise: float, seed: int, stream: str = STREAM, every: int = REPORT, reports: int = REPORTS,
              late_gap: float | None = None) -> list[list]:
    """A descent plus the shared sample noise, the trial's `gap` (`late_gap` from the middle on) and its own
    noise, per REPORT samples; reported every `every` samples as the mean of the chunks since the last report."""
    generator, difficulty = random.Random(seed), shared_noise()
    chunks = [
        1.0 + 2.0 * 0.7**k + difficulty[k] + (gap if late_gap is None or k < REPORTS // 2 else late_gap)
        + generator.gauss(0.0, noise)
        for k in range(REPORTS)
    ]
    per = every // REPORT
    return [
        [start * REPORT, (start + per) * REPORT, sum(chunks[start : start + per]) / per, f"{stream}-{(start + per) * REPORT}"]
        for start in range(0, min(reports * per, REPORTS), per)
    ]


def add(study: optuna.Study, rows: list[list], state: TrialState = TrialState.COMPLETE, **user_attrs) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(
        state=state, value=rows[-1][2] if state == TrialState.COMPLETE else None,
        intermediate_values={row[1]: row[2] for row in rows}, user_attrs={attrs.PAIRED_LOSSES: rows, **user_attrs},
    )
    study.add_trial(trial)
    return study.get_trials(deepcopy=False)[-1]


def race(study: optuna.Study, rows: list[list], pruner: RacingPruner, **user_attrs) -> int | None:
    """Reports `rows` one by one as a running trial; the samples seen when the pruner stopped it, else None."""
    trial = study.ask()
    for key, value in user_attrs.items():
        trial.set_user_attr(key, value)
    for index, row in enumerate(rows):
        trial.report(row[2], row[1])
        trial.set_user_attr(attrs.PAIRED_LOSSES, rows[: index + 1])
        if pruner.prune(study, study.get_trials(deepcopy=False)[trial.number]):
            study.tell(trial, state=TrialState.PRUNED)
            return row[1]
    study.tell(trial, rows[-1][2])
    return None


@pytest.fixture
def study() -> optuna.Study:
    return optuna.create_study(direction="minimize")


def test_stops_a_clearly_worse_trial_early_and_records_why(study):
    pruner = RacingPruner()
    add(study, intervals(0.0, 0.01, seed=1))
    stopped = race(study, intervals(0.2, 0.01, seed=2), pruner)
    assert stopped == 3 * REPORT  # the first report with two paired intervals in its latest half
    verdict = study.get_trials()[-1].user_attrs[attrs.RACE]
    assert verdict["reference"] == 0 and verdict["against"] == "leader" and verdict["stopped_at"] == stopped
    assert verdict["worse_by"] == pytest.approx(0.2, abs=0.03) and verdict["worse_by"] > verdict["bound"]


@pytest.mark.parametrize("seed", range(10))
def test_never_stops_a_trial_within_noise(study, seed):
    """Same setting, other seeds: no gap, only each trial's own noise, tested at every report."""
    add(study, intervals(0.0, 0.01, seed=100 + seed))
    assert race(study, intervals(0.0, 0.01, seed=200 + seed), RacingPruner()) is None


def test_a_slow_starter_is_judged_on_where_it_is_now(study):
    add(study, intervals(0.0, 0.005, seed=1))
    late = intervals(0.15, 0.005, seed=2, late_gap=-0.05)  # behind for half the budget, then ahead
    assert race(study, late, RacingPruner(recent=0.5, min_pairs=4)) is None
    assert race(study, late, RacingPruner(recent=1.0)) == 2 * REPORT


def test_races_against_the_leader_as_it_changes(study):
    add(study, intervals(0.0, 0.005, seed=1, reports=3))  # trial 0: the best so far, but stopped early
    add(study, intervals(0.05, 0.005, seed=2, late_gap=-0.1))  # trial 1: overtakes trial 0's level
    pruner = RacingPruner()
    challenger = study.ask()
    references = []
    for index, row in enumerate(intervals(0.1, 0.005, seed=3, late_gap=0.0)):
        challenger.set_user_attr(attrs.PAIRED_LOSSES, intervals(0.1, 0.005, seed=3, late_gap=0.0)[: index + 1])
        verdict = pruner.verdict(study, study.get_trials(deepcopy=False)[challenger.number])
        references.append(verdict.reference if verdict else None)
    # trial 0 leads where it reported; beyond its 3 reports it cannot pair, and trial 1 leads
    assert references[:3] == [None, None, 0] and references[3:] == [1] * (REPORTS - 3)


def test_never_compares_across_streams(study):
    add(study, intervals(0.0, 0.005, seed=1, stream="file-order"))
    worse_elsewhere = intervals(0.5, 0.005, seed=2, stream="shuffled")
    assert race(study, worse_elsewhere, RacingPruner()) is None
    add(study, intervals(0.0, 0.005, seed=3, stream="shuffled"))
    assert race(study, worse_elsewhere, RacingPruner()) == 3 * REPORT
    assert study.get_trials()[-1].user_attrs[attrs.RACE]["reference"] == 2  # its own stream's leader


def test_pairs_trials_that_report_at_other_intervals(study):
    add(study, intervals(0.0, 0.005, seed=1, every=2 * REPORT, reports=4))  # a batch twice as large
    # two pairs of 80 samples in the latest half of what it trained
    assert race(study, intervals(0.2, 0.005, seed=2), RacingPruner()) == 6 * REPORT


def test_a_remedy_races_against_the_baseline_only(study):
    add(study, intervals(0.0, 0.005, seed=1), **{attrs.ABLATION: attrs.BASELINE})
    add(study, intervals(-0.3, 0.005, seed=2))  # a sampled trial far ahead of both
    pruner = RacingPruner()
    assert race(study, intervals(-0.1, 0.005, seed=3), pruner, **{attrs.ABLATION: "lower_lr"}) is None
    assert race(study, intervals(0.2, 0.005, seed=4), pruner, **{attrs.ABLATION: "clip_harder"}) == 3 * REPORT
    assert study.get_trials()[-1].user_attrs[attrs.RACE]["against"] == "baseline"
    assert race(study, intervals(0.5, 0.005, seed=5), pruner, **{attrs.ABLATION: attrs.BASELINE}) is None


def test_a_rerun_is_raced_afresh_not_stopped_by_the_attrs_it_inherited(study):
    add(study, intervals(0.0, 0.005, seed=1))
    dead = intervals(0.3, 0.005, seed=2)
    dead_number = 7  # the trial it replaces
    inherited = {attrs.PAIRED_LOSSES: dead[:3], attrs.RACE: {"trial": dead_number, "stopped_at": 2 * REPORT}}
    rerun = study.ask()
    for key, value in inherited.items():
        rerun.set_user_attr(key, value)
    rerun.set_user_attr(attrs.PAIRED_LOSSES, dead[:3] + dead[:1])  # the re-run's first report starts at 0 again
    frozen = study.get_trials(deepcopy=False)[rerun.number]
    assert sorted(paired_curve(frozen)) == [0, REPORT]
    assert RacingPruner().prune(study, frozen) is False  # one interval: nothing to judge yet


def test_t_quantile_close_to_students():
    for freedom, exact in ((2, 2.920), (4, 2.132), (10, 1.812), (30, 1.697)):
        assert t_quantile(0.95, freedom) == pytest.approx(exact, rel=0.015)


@pytest.mark.slow
def test_a_real_notes_study_races_its_remedies_against_the_baseline(tmp_path, cache_dir):
    """train.py's reports through the storage to the pruner, and its decision into the remedies table."""
    run_train(["sweep=notes_quickstart", "experiment=quickstart", "hydra.sweeper.n_trials=3", "trainer.max_samples_seen=160",
               "trainer.logging_steps=1", "task.val_size=0"], tmp_path, cache_dir)
    study = optuna.load_study(study_name="notes-demo-tiny", storage=f"sqlite:///{tmp_path}/sweeps/notes-demo-tiny.db")
    baseline, *remedies = study.get_trials()
    assert baseline.user_attrs[attrs.ABLATION] == attrs.BASELINE and baseline.state == TrialState.COMPLETE
    stopped = [t for t in remedies if t.state == TrialState.PRUNED]
    assert stopped, [(t.user_attrs[attrs.ABLATION], t.value) for t in remedies]
    for trial in stopped:
        race = trial.user_attrs[attrs.RACE]
        assert race["against"] == "baseline" and race["reference"] == baseline.number
        assert trial.user_attrs[attrs.PAIRED_LOSSES][-1][1] == race["stopped_at"] < 160  # its partial curve, kept
        streams = {row[3] for row in trial.user_attrs[attrs.PAIRED_LOSSES]} & {row[3] for row in baseline.user_attrs[attrs.PAIRED_LOSSES]}
        assert len(streams) == len(trial.user_attrs[attrs.PAIRED_LOSSES])  # the same samples, report for report
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    logged = [json.loads(line) for line in (sweep_dir / "trial-0" / "metrics.jsonl").read_text().splitlines()]
    starts = [0] + [line["samples"] for line in logged[:-1]]  # logging_steps=1: one logged loss per report
    assert [row[:3] for row in baseline.user_attrs[attrs.PAIRED_LOSSES]] == [
        [start, line["samples"], pytest.approx(line["loss"])] for start, line in zip(starts, logged)
    ]
    table = subprocess.run([sys.executable, "-m", "analysis", "rank", str(sweep_dir)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "COLUMNS": "300"})
    assert table.returncode == 0, table.stderr
    race = stopped[0].user_attrs[attrs.RACE]
    assert f"stopped at {race['stopped_at']} samples, worse than baseline by {race['worse_by']:.3g}" in table.stdout
