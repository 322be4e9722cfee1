"""Both smoothings against values computed by hand, and the objective the sweep reports agreeing with
the ranking's number for the same run."""
import math

import pytest

from analysis import load_runs, rank_runs
from analysis.synthetic import synthetic_losses, write_run_dir
from runs.jsonl import read_jsonl
from runs.smoothing import (
    llamafactory_smooth,
    llamafactory_weight,
    objective_from_metrics,
    time_constant_ema,
    value_at_budget,
)


def test_llamafactory_smoothing_three_points_by_hand():
    # N = 3: w = 1.8 * (1 / (1 + e^-0.15) - 0.5) = 1.8 * (1 / 1.860708 - 0.5) = 1.8 * 0.0374298 = 0.0673737
    weight = 0.0673737
    assert llamafactory_weight(3) == pytest.approx(weight, abs=1e-7)
    # s0 = x0 = 1
    # s1 = w * 1 + (1 - w) * 2 = 2 - w = 1.9326263
    # s2 = w * s1 + (1 - w) * 4 = 4 - w * (4 - s1) = 4 - 0.0673737 * 2.0673737 = 4 - 0.1392866 = 3.8607134
    assert llamafactory_smooth([1.0, 2.0, 4.0]) == pytest.approx([1.0, 1.9326263, 3.8607134], abs=1e-6)


def test_time_constant_ema_three_points_by_hand():
    # tau = 10, points at 10, 20, 40 samples; d = e^-1 = 0.3678794, a = 1 - d = 0.6321206
    # p=10: sum = a*3, weight = a                  -> 3
    # p=20: sum = d*a*3 + a*1, weight = d*a + a    -> (3d + 1) / (d + 1) = 2.1036383 / 1.3678794 = 1.5378828
    # p=40: gap 20, D = e^-2 = 0.1353353, A = 0.8646647
    #       sum = D*(d*a*3 + a) + A*2 = 0.1353353 * 1.3297530 + 1.7293294 = 0.1799626 + 1.7293294 = 1.9092920
    #       weight = D*(d*a + a) + A = 0.1353353 * 0.8646647 + 0.8646647 = 0.1170196 + 0.8646647 = 0.9816843
    #       -> 1.9092920 / 0.9816843 = 1.9449143
    smoothed = time_constant_ema([10, 20, 40], [3.0, 1.0, 2.0], time_constant=10)
    assert smoothed == pytest.approx([3.0, 1.5378828, 1.9449143], abs=1e-6)
    # read at a budget of 30: the last point not past it (20); a run that never reached 50 has no value there
    assert value_at_budget([10, 20, 40], smoothed, 30) == pytest.approx(1.5378828, abs=1e-6)
    assert value_at_budget([10, 20, 40], smoothed, 50) is None


def test_time_constant_ema_is_debiased_and_rejects_bad_input():
    assert time_constant_ema([0, 5], [2.0, 2.0], 100) == [2.0, 2.0]
    with pytest.raises(ValueError, match="must not decrease"):
        time_constant_ema([10, 5], [1.0, 1.0], 10)
    assert math.isfinite(time_constant_ema([1000], [1.0], 1)[0])


def test_ranking_value_equals_the_objective_training_reports(tmp_path):
    run_dir = write_run_dir(tmp_path / "run", synthetic_losses(50, 0.05, 0.05, seed=1), batch_size=4, overrides={})
    ranking = rank_runs(load_runs([str(run_dir)]).runs, budget=160, time_constant=20)
    records, _ = read_jsonl(run_dir / "metrics.jsonl")
    reported = objective_from_metrics(records, "smoothed_loss", "samples", time_constant=20, budget=160)
    assert ranking.rows[0].value == pytest.approx(reported)
