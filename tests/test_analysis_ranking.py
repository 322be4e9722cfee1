"""Ranking at a common budget, repeats and ties, diagnosis, ablation and importance, on run dirs
written per docs/run_dir.md and on LLaMA-Factory output dirs as LLaMA-Factory writes them."""
import json
import shutil
from pathlib import Path

import pytest

from analysis import AnalysisInputError, diagnose, load_runs, rank_runs
from analysis.sweep import ablation_effects, param_importances
from analysis.synthetic import synthetic_losses, write_run_dir
from runs.jsonl import read_jsonl
from runs.smoothing import objective_from_metrics

LLAMAFACTORY = Path(__file__).parent / "fixtures" / "llamafactory"


def by_name(ranking, suffix):
    return next(row for row in ranking.rows if row.run.name.endswith(suffix))


def test_runs_of_different_lengths_and_batch_sizes_are_read_at_one_budget(tmp_path):
    # finals in samples: 4*100 = 400, 8*60 = 480, 16*40 = 640, 4*10 = 40 (pruned early)
    specs = {"a": (4, 100, 0.020), "b": (8, 60, 0.030), "c": (16, 40, 0.060), "short": (4, 10, 0.021)}
    for name, (batch, steps, rate) in specs.items():
        write_run_dir(tmp_path / name, synthetic_losses(steps, rate, 0.02, seed=len(name)), batch_size=batch,
                      overrides={"trainer.per_device_batch_size": batch, "optimizer.lr": rate},
                      status="pruned" if name == "short" else "completed")
    ranking = rank_runs(load_runs([str(tmp_path)]).runs)
    # median final = (400 + 480) / 2 = 440; runs below 220 are too short; budget = min(400, 480, 640)
    assert ranking.budget == 400
    assert ranking.time_constant == 40
    assert "common budget of 400 samples, time constant 40 samples" in ranking.describe()
    for name in ("a", "b", "c"):
        records, _ = read_jsonl(tmp_path / name / "metrics.jsonl")
        expected = objective_from_metrics(records, "smoothed_loss", "samples", time_constant=40, budget=400)
        assert by_name(ranking, name).value == pytest.approx(expected)
    short = by_name(ranking, "short")
    assert short.rank is None and short.value is None and short.run.status == "pruned"
    assert any("too short" in flag for flag in short.flags)
    assert [row.rank for row in ranking.rows[:3]] == [1, 2, 3]
    assert ranking.rows[0].value <= ranking.rows[1].value <= ranking.rows[2].value


def test_repeats_pool_into_mean_and_spread_and_close_calls_are_within_noise(tmp_path):
    for seed in (1, 2, 3):
        write_run_dir(tmp_path / f"lr1-seed{seed}", synthetic_losses(60, 0.05, 0.3, seed=seed), batch_size=4,
                      overrides={"optimizer.lr": 1e-3, "trainer.seed": seed})
    write_run_dir(tmp_path / "lr2", synthetic_losses(60, 0.05, 0.3, seed=9), batch_size=4, overrides={"optimizer.lr": 2e-3})
    ranking = rank_runs(load_runs([str(tmp_path)]).runs)
    pooled = next(row for row in ranking.rows if len(row.members) == 3)
    assert len(pooled.repeats) == 3 and pooled.spread > 0
    assert pooled.value == pytest.approx(sum(pooled.repeats) / 3)
    second = ranking.rows[1]
    assert any(flag.startswith("within noise of #1") for flag in second.flags), second.flags


def test_identical_values_are_flagged_as_a_tie(tmp_path):
    losses = synthetic_losses(30, 0.05, 0.05, seed=3)
    write_run_dir(tmp_path / "x", losses, batch_size=4, overrides={"optimizer.lr": 1e-3})
    write_run_dir(tmp_path / "y", losses, batch_size=4, overrides={"optimizer.lr": 3e-3})
    ranking = rank_runs(load_runs([str(tmp_path)]).runs)
    assert ranking.rows[0].rank == ranking.rows[1].rank == 1
    assert ranking.rows[1].flags == ["tie with #1"]


def test_llamafactory_output_dirs_rank_beside_our_runs(tmp_path):
    write_run_dir(tmp_path / "ours", synthetic_losses(80, 0.04, 0.03, seed=5), batch_size=4, overrides={})
    loaded = load_runs([str(tmp_path / "ours"), str(LLAMAFACTORY / "*")])
    assert loaded.problems == []
    sources = sorted(run.source for run in loaded.runs)
    assert sources == ["llamafactory", "llamafactory", "rundir"]
    with_args = next(run for run in loaded.runs if run.path.endswith("10-00-00"))
    # trainer_log.jsonl: logged every 5 steps; samples = step x train_batch_size 2 x gradient accumulation 4
    assert with_args.series.steps[:2] == [5.0, 10.0]
    assert with_args.series.samples[:2] == [40.0, 80.0]
    assert with_args.eval_loss is not None and with_args.status == "completed"
    state_only = next(run for run in loaded.runs if run.path.endswith("11-00-00"))
    # no trainer_log.jsonl: trainer_state.json log_history is read instead; batch 4, accumulation unknown
    assert state_only.series.samples[:2] == [20.0, 40.0]
    assert state_only.notes == ["samples assume gradient accumulation 1 (no training_args.yaml)"]
    ranking = rank_runs(loaded.runs)
    # finals: ours 4*80 = 320, LLaMA-Factory 40*8 = 320 and 60*4 = 240 samples
    assert ranking.budget == 240
    assert [row.rank for row in ranking.rows] == [1, 2, 3]


def test_diagnosis_measures_noise_descent_and_spikes(tmp_path):
    smooth = synthetic_losses(200, 0.01, 0.01, seed=1)
    jagged = synthetic_losses(200, 0.01, 0.2, seed=1)
    spiky = list(smooth)
    for index in (50, 120, 170):
        spiky[index] += 2.0
    flat = [1.0 + 0.01 * ((i * 7) % 5) for i in range(200)]
    for name, losses in {"smooth": smooth, "jagged": jagged, "spiky": spiky, "flat": flat}.items():
        write_run_dir(tmp_path / name, losses, batch_size=4, overrides={"name": name})
    runs = {Path(run.path).name: run for run in load_runs([str(tmp_path)]).runs}
    figures = {name: diagnose(run, "samples", time_constant=40) for name, run in runs.items()}
    assert figures["jagged"].noise > 4 * figures["smooth"].noise
    assert figures["spiky"].spikes == 3
    assert figures["smooth"].spikes == 0
    assert figures["smooth"].descent > 0.5
    assert figures["flat"].still_falling is False
    assert figures["smooth"].points == 200


def diagnosed(tmp_path, name, losses, batch_size=4):
    write_run_dir(tmp_path / name, losses, batch_size=batch_size, overrides={})
    return diagnose(load_runs([str(tmp_path / name)]).runs[0], "samples", time_constant=40)


@pytest.mark.parametrize("rate", [0.2, 0.02, 0.0], ids=["fast", "slow", "flat"])
@pytest.mark.parametrize("noise", [0.005, 0.05])
@pytest.mark.parametrize("seed", [1, 2])
def test_noise_tracks_the_injected_noise_whatever_the_descent(tmp_path, rate, noise, seed):
    measured = diagnosed(tmp_path, "run", synthetic_losses(400, rate, noise, seed=seed)).noise
    assert measured == pytest.approx(noise, rel=0.1)


def test_a_slowly_falling_curve_does_not_read_smoother_than_a_fast_one(tmp_path):
    # the same injected noise on a fast and a slow descent: a causal smoothing's lag behind the fast one
    # used to read as jaggedness; the fast curve must not read noisier than the slow one
    fast = diagnosed(tmp_path, "fast", synthetic_losses(300, 0.1, 0.02, seed=4))
    slow = diagnosed(tmp_path, "slow", synthetic_losses(300, 0.005, 0.02, seed=4))
    assert slow.noise >= 0.9 * fast.noise
    assert fast.noise <= 1.1 * slow.noise


def test_still_falling_spans_the_whole_tail_window(tmp_path):
    # logged every 16 samples from 16 to 160: the last 20% of the span (28.8 samples) holds 2 points
    # 16 apart; a fall of 0.015 per 16 samples is 0.8% of the loss per logging interval (what the span of
    # the logged points alone showed, not flagged) and 1.44% over the whole window
    losses = [2.0 - 0.015 * i for i in range(10)]
    figures = diagnosed(tmp_path, "short", losses, batch_size=16)
    level = (losses[-1] + losses[-2]) / 2
    assert figures.tail_change == pytest.approx(-0.015 / 16 * 28.8 / level)
    assert figures.still_falling is True


def test_rank_by_eval_loss_or_a_recorded_metric(tmp_path):
    write_run_dir(tmp_path / "p", synthetic_losses(40, 0.05, 0.02, seed=1), batch_size=4, overrides={"k": 1}, eval_loss=1.5)
    write_run_dir(tmp_path / "q", synthetic_losses(40, 0.05, 0.02, seed=2), batch_size=4, overrides={"k": 2}, eval_loss=1.2)
    runs = load_runs([str(tmp_path)]).runs
    assert [row.run.name for row in rank_runs(runs, by="eval_loss").rows] == [f"{tmp_path.name}/q", f"{tmp_path.name}/p"]
    assert rank_runs(runs, by="grad_norm").rows[0].value == 1.0
    with pytest.raises(AnalysisInputError, match="no run recorded the metric 'accuracy'"):
        rank_runs(runs, by="accuracy")


def test_ablation_effects_and_parameter_importance(tmp_path):
    remedies = {"baseline": 0.02, "lower_lr": 0.01, "more_warmup": 0.03, "weight_decay": 0.025, "clip_0.5": 0.028}
    for index, (remedy, rate) in enumerate(remedies.items()):
        write_run_dir(tmp_path / remedy, synthetic_losses(100, rate, 0.05, seed=index), batch_size=4,
                      overrides={"optimizer.lr": rate, "trainer.max_grad_norm": 1.0 - 0.1 * index})
    runs = load_runs([str(tmp_path)]).runs
    for run in runs:
        run.attrs["ablation"] = Path(run.path).name
    ranking = rank_runs(runs)
    effects, message = ablation_effects(ranking)
    assert message is None
    lower_lr = {effect.figure: effect for effect in effects if effect.remedy == "lower_lr"}
    baseline_row = next(row for row in ranking.rows if row.run.attrs["ablation"] == "baseline")
    assert lower_lr["value"].baseline == baseline_row.value
    assert lower_lr["value"].change > 0  # a slower descent ends higher at the common budget
    importances, messages = param_importances(ranking)
    assert set(importances["PedAnova"]) == {"optimizer.lr", "trainer.max_grad_norm"}
    for evaluator in ("Fanova", "MeanDecreaseImpurity"):
        assert evaluator in importances or any(evaluator in line for line in messages)


def test_too_few_runs_for_importance_is_a_message(tmp_path):
    write_run_dir(tmp_path / "only", synthetic_losses(20, 0.05, 0.02, seed=1), batch_size=4, overrides={"optimizer.lr": 1e-3})
    importances, messages = param_importances(rank_runs(load_runs([str(tmp_path)]).runs))
    assert importances == {} and "needs at least 4 ranked runs" in messages[0]


def test_a_remedy_inside_the_baselines_spread_is_within_noise(tmp_path):
    seeds = [synthetic_losses(60, 0.03, 0.4, seed=seed) for seed in (1, 2, 3)]
    for seed, losses in enumerate(seeds):
        write_run_dir(tmp_path / f"baseline-{seed}", losses, batch_size=4, overrides={"optimizer.lr": 1e-3, "trainer.seed": seed})
    # a remedy that changes nothing: the mean of the baseline's curves (smoothing is linear, so its value
    # is the baseline's mean), 0 away from the baseline and so inside any spread
    unchanged = [sum(points) / 3 for points in zip(*seeds, strict=True)]
    write_run_dir(tmp_path / "shuffle", unchanged, batch_size=4, overrides={"optimizer.lr": 1e-3, "trainer.shuffle": True})
    write_run_dir(tmp_path / "higher_lr", synthetic_losses(60, 0.3, 0.01, seed=5), batch_size=4,
                  overrides={"optimizer.lr": 1e-2})
    runs = load_runs([str(tmp_path)]).runs
    for run in runs:
        run.attrs["ablation"] = Path(run.path).name.split("-")[0]
    effects, _ = ablation_effects(rank_runs(runs))
    by_remedy = {effect.remedy: effect for effect in effects if effect.figure == "value"}
    assert by_remedy["shuffle"].spread > 0 and by_remedy["shuffle"].within_noise
    assert by_remedy["higher_lr"].change < 0 and not by_remedy["higher_lr"].within_noise


def test_a_llamafactory_dir_without_all_results_reads_as_completed_when_its_trainer_state_says_so(tmp_path):
    finished = tmp_path / "finished"
    shutil.copytree(LLAMAFACTORY / "train_2026-11-27-11-00-00", finished)
    (finished / "all_results.json").unlink()
    state = json.loads((finished / "trainer_state.json").read_text())
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    state["max_steps"] = 100
    state["log_history"] = [entry for entry in state["log_history"] if "train_runtime" not in entry]
    (unfinished / "trainer_state.json").write_text(json.dumps(state))
    runs = {Path(run.path).name: run for run in load_runs([str(tmp_path)]).runs}
    assert runs["finished"].status == "completed"
    assert runs["unfinished"].status == "running"
