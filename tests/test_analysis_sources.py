"""Reading runs from an Optuna study (SQLite and journal file), from a real W&B offline run made by a
tiny HF Trainer run, and from W&B online at the public API's boundary."""
from pathlib import Path

import optuna
import pytest

from analysis import AnalysisInputError, load_runs, rank_runs
from analysis.synthetic import synthetic_losses, write_run_dir

LEARNING_RATES = (1e-3, 2e-3, 1e-5, 2e-5, 1.9e-3, 1e-6)
BATCH = 8


def run_tiny_sweep(storage, run_dir_for_trial_0: Path) -> None:
    """A real sweep: MedianPruner over trials reporting a loss at samples seen; slow learning rates get pruned."""
    study = optuna.create_study(study_name="notes", storage=storage,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    for index, lr in enumerate(LEARNING_RATES):
        study.enqueue_trial({"optimizer.lr": lr}, user_attrs={"ablation": "baseline" if index == 0 else f"lr_{lr:g}"})

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("optimizer.lr", 1e-6, 1e-2, log=True)
        if trial.number == 0:
            trial.set_user_attr("run_dirs", [str(run_dir_for_trial_0)])
        if trial.number == 4:
            trial.set_user_attr("values_per_seed", [[1.0], [1.1], [0.9]])
        if trial.number == 1:
            trial.set_user_attr("spread", [0.05])
        loss = 3.0
        for step in range(1, 11):
            loss -= lr * 100
            trial.report(loss, step * BATCH)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

    study.optimize(objective, n_trials=len(LEARNING_RATES))


@pytest.mark.parametrize("kind", ["sqlite", "journal file", "journal: url"])
def test_study_is_read_with_its_pruned_trials(tmp_path, kind):
    journal = tmp_path / "sweep.journal"
    storage = {"sqlite": f"sqlite:///{tmp_path / 'sweep.db'}", "journal file": str(journal), "journal: url": f"journal:{journal}"}[kind]
    opened = storage if kind == "sqlite" else optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))
    run_dir = write_run_dir(tmp_path / "multirun" / "0", synthetic_losses(10, 0.1, 0.01, seed=0), batch_size=BATCH, overrides={})
    run_tiny_sweep(opened, run_dir)
    loaded = load_runs([str(tmp_path / "multirun")], storage=storage, study="notes")
    assert loaded.problems == []
    states = sorted(run.status for run in loaded.runs)
    assert states.count("pruned") >= 2 and states.count("completed") >= 2
    merged = next(run for run in loaded.runs if run.name == "trial-0")
    # trial 0 named its run dir, so the two are one record: the raw series with the trial's params and attrs
    assert merged.source == "rundir" and merged.params["optimizer.lr"] == 1e-3
    assert merged.attrs["ablation"] == "baseline"
    pruned = next(run for run in loaded.runs if run.status == "pruned")
    assert pruned.source == "optuna" and pruned.series.presmoothed
    assert pruned.series.samples[0] == BATCH and len(pruned.series.samples) < 10
    assert pruned.attrs["ablation"].startswith("lr_")
    ranking = rank_runs(loaded.runs)
    repeated = next(row for row in ranking.rows if row.run.name == "trial-4")
    # a trial without loaded run dirs: its value at the budget from its reports, its spread from the sweeper
    assert repeated.repeats == [1.0, 1.1, 0.9] and repeated.spread == pytest.approx(0.1)
    assert repeated.value == pytest.approx(3.0 - 1.9e-3 * 100 * (ranking.budget / BATCH))
    assert next(row for row in ranking.rows if row.run.name == "trial-1").spread == 0.05


def test_unknown_study_or_missing_storage_is_a_clear_error(tmp_path):
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    optuna.create_study(study_name="notes", storage=storage)
    with pytest.raises(AnalysisInputError, match="study 'nope' not found .*studies there: notes"):
        load_runs(storage=storage, study="nope")
    with pytest.raises(AnalysisInputError, match="no such SQLite file"):
        load_runs(storage=f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(AnalysisInputError, match="no such journal file"):
        load_runs(storage=str(tmp_path / "missing.journal"))


def test_wandb_offline_run_from_hf_trainer_is_read_back(tmp_path, monkeypatch):
    import torch
    import wandb
    from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_PROJECT", "analysis-test")
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb.teardown()  # wandb keeps settings read from the environment of an earlier in-process run
    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=100, max_position_embeddings=64)
    model = Qwen2ForCausalLM(config)
    rows = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 100, (32, 16))]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=8,
                             logging_steps=2, learning_rate=1e-3, report_to=["wandb"], run_name="tiny",
                             save_strategy="no", use_cpu=True, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=rows).train()
    wandb.finish()
    loaded = load_runs([str(tmp_path / "wandb")])
    assert loaded.problems == []
    (run,) = loaded.runs
    assert run.source == "wandb-offline" and run.status == "completed"
    assert run.series.steps == [2.0, 4.0, 6.0, 8.0]
    # samples from the logged config: global step x per_device_train_batch_size 4 x accumulation 1
    assert run.series.samples == [8.0, 16.0, 24.0, 32.0]
    assert len(run.series.loss) == 4 and all(loss > 0 for loss in run.series.loss)
    assert run.params["per_device_train_batch_size"] == 4


class PublicApiRun:
    """The attributes of wandb.apis.public.Run that the reader uses (no W&B server can run in the tests)."""

    def __init__(self, run_id, group, losses, state="finished"):
        self.id, self.name, self.group, self.state = run_id, f"trial-{run_id}", group, state
        self.config = {"trainer": {"per_device_batch_size": 4, "gradient_accumulation_steps": 2}, "optimizer": {"lr": 1e-3}}
        self.summary = {"train/loss": losses[-1], "eval/loss": 1.25, "_runtime": 3.0}
        self.losses = losses

    def scan_history(self, keys=None, page_size=1000, min_step=0, max_step=None):
        return iter({"_step": i, "train/global_step": 5 * (i + 1), "train/loss": loss} for i, loss in enumerate(self.losses))


class PublicApi:
    def __init__(self, runs):
        self.runs_by_group = runs
        self.calls = []

    def runs(self, path, filters=None, order="+created_at", per_page=50):
        self.calls.append((path, filters))
        return [run for run in self.runs_by_group if filters is None or run.group == filters["group"]]


def test_wandb_online_runs_at_the_public_api_boundary():
    api = PublicApi([PublicApiRun("a1", "notes", [2.0, 1.5, 1.2]), PublicApiRun("b2", "other", [2.0, 1.9]),
                     PublicApiRun("c3", "notes", [2.1, 1.8, 1.0], state="crashed")])
    loaded = load_runs(["wandb:team/lorasweep/notes"], wandb_api=api)
    assert api.calls == [("team/lorasweep", {"group": "notes"})]
    assert [run.name for run in loaded.runs] == ["trial-a1", "trial-c3"]
    first = loaded.runs[0]
    assert first.series.steps == [5.0, 10.0, 15.0]
    assert first.series.samples == [40.0, 80.0, 120.0]  # steps x batch 4 x accumulation 2
    assert first.eval_loss == 1.25 and first.group == "notes" and first.params["optimizer.lr"] == 1e-3
    assert loaded.runs[1].status == "failed"


def test_wandb_online_without_a_key_is_a_problem_not_a_crash(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    loaded = load_runs(["wandb:team/lorasweep/notes"])
    assert loaded.runs == [] and "WANDB_API_KEY is not set" in loaded.problems[0]


def test_run_dir_params_are_read_with_hydra_override_grammar(tmp_path):
    run_dir = write_run_dir(tmp_path / "run", synthetic_losses(10, 0.1, 0.01, seed=0), batch_size=4, overrides={})
    (run_dir / ".hydra" / "overrides.yaml").write_text(
        "- optimizer.lr=1e-4\n- scheduler=cosine_with_restarts\n- +trainer.max_grad_norm=0.5\n- ~lora.dropout\n"
        "- trial={_target_:sweeper.reporter.TrialReporter,study_name:notes,trial_id:3}\n- logger.run_name=trial-3\n")
    (run,) = load_runs([str(run_dir)]).runs
    # YAML would read 1e-4 as text; Hydra reads it as the float the run used
    assert run.params["optimizer.lr"] == 1e-4
    assert run.params["scheduler"] == "cosine_with_restarts" and run.params["trainer.max_grad_norm"] == 0.5
    assert "lora.dropout" not in run.params and run.params["trainer.per_device_batch_size"] == 4
    # how the sweeper launched the run is not a setting that was varied
    assert "trial" not in run.params and "logger.run_name" not in run.params
    (run_dir / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=[unclosed\n")
    loaded = load_runs([str(run_dir)])
    assert len(loaded.runs) == 1 and "unreadable config or overrides" in loaded.problems[0]


def test_wandb_online_api_errors_are_a_problem_not_a_crash():
    from wandb.errors import CommError

    class UnreachableApi:
        def runs(self, path, filters=None, order="+created_at", per_page=50):
            raise CommError("could not reach api.wandb.ai")

    loaded = load_runs(["wandb:team/lorasweep/notes"], wandb_api=UnreachableApi())
    assert loaded.runs == [] and "could not be reached (could not reach api.wandb.ai)" in loaded.problems[0]
