"""`python -m analysis`: garbage in gives one clear line and exit code 2; the outputs agree with the table."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from analysis.cli import main
from analysis.outputs import display
from analysis.synthetic import synthetic_losses, write_run_dir

ROOT = Path(__file__).resolve().parents[1]


def write_sweep(root: Path, runs: int = 5) -> Path:
    for index in range(runs):
        write_run_dir(root / str(index), synthetic_losses(60, 0.02 + 0.01 * index, 0.05, seed=index), batch_size=4,
                      overrides={"optimizer.lr": 1e-4 * (index + 1), "scheduler": ["linear", "cosine"][index % 2]})
    return root


def run_main(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_empty_folder(tmp_path, capsys):
    code, _, err = run_main(capsys, "rank", str(tmp_path))
    assert code == 2 and "no runs found" in err


def test_path_that_does_not_exist(tmp_path, capsys):
    code, _, err = run_main(capsys, "rank", str(tmp_path / "nowhere"))
    assert code == 2 and "no such file or folder" in err


def test_truncated_jsonl_line(tmp_path, capsys):
    run_dir = write_run_dir(tmp_path / "run", synthetic_losses(20, 0.05, 0.02, seed=1), batch_size=4, overrides={})
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"step": 21, "samples": 84, "lo')
    code, out, err = run_main(capsys, "rank", str(run_dir))
    assert code == 2 and "line 21 is not valid JSON" in err
    assert "run" in out  # the 20 good lines are still ranked


def test_run_with_one_log_point(tmp_path, capsys):
    write_run_dir(tmp_path / "run", [2.0], batch_size=4, overrides={})
    code, _, err = run_main(capsys, "rank", str(tmp_path / "run"))
    assert code == 2 and "only 1 logged loss point" in err and "no usable runs" in err


def test_study_name_that_does_not_exist(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    optuna.create_study(study_name="notes", storage=storage)
    code, _, err = run_main(capsys, "rank", "--storage", storage, "--study", "nope")
    assert code == 2 and err.strip() == f"analysis: study 'nope' not found in {storage}; studies there: notes"


def test_storage_from_the_environment_when_no_paths_or_storage_given(tmp_path, capsys, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    optuna.create_study(study_name="notes", storage=storage)
    monkeypatch.setenv("LORASWEEP_STORAGE", storage)
    code, _, err = run_main(capsys, "rank", "--study", "nope")
    assert code == 2 and err.strip() == f"analysis: study 'nope' not found in {storage}; studies there: notes"


@pytest.mark.parametrize("argv, message", [
    ([], "nothing to read"),
    (["--report", "r.pdf", "x"], "a report is FILE.html or FILE.md"),
    (["--study", "notes", "x"], "--study needs --storage"),
])
def test_bad_options(capsys, monkeypatch, argv, message):
    monkeypatch.delenv("LORASWEEP_STORAGE", raising=False)
    code, _, err = run_main(capsys, "rank", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_outputs_match_the_table(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "multirun")
    html, markdown = tmp_path / "report.html", tmp_path / "md" / "report.md"
    code, out, err = run_main(capsys, "rank", str(sweep), "--csv", str(tmp_path / "r.csv"),
                              "--json", str(tmp_path / "r.json"), "--report", str(html), "--top", "3")
    assert code == 0, err
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["budget"] == 240 and document["time_constant"] == 24
    assert "common budget of 240 samples" in out
    best = document["rows"][0]
    assert best["rank"] == 1 and display(best["smoothed_loss"]) in out
    with open(tmp_path / "r.csv", encoding="utf-8") as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 5 and lines[0]["budget"] == "240.0" and lines[0]["unit"] == "samples"
    page = html.read_text()
    assert page.count("data:image/png;base64,") >= 4  # overlay, params, and the top runs' curves
    assert f"<td class='nowrap'>{display(best['smoothed_loss'])}</td>" in page
    code, _, _ = run_main(capsys, "rank", str(sweep), "--report", str(markdown))
    assert code == 0
    text = markdown.read_text()
    assert "![Top runs, smoothed as ranked](report_overlay.png)" in text
    assert (markdown.parent / "report_overlay.png").stat().st_size > 1000


def test_wandb_table_is_logged_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    code, out, err = run_main(capsys, "rank", str(write_sweep(tmp_path / "multirun", 2)), "--wandb")
    assert code == 0, err
    run_dir = out.strip().splitlines()[-1].removeprefix("W&B run: ")
    records = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", run_dir],
                             capture_output=True, text=True, check=True).stdout
    history = [json.loads(line)["history"]["item"] for line in records.splitlines() if '"type":"history"' in line]
    assert history and history[0]["ranking._type"] == "table-file" and history[0]["ranking.nrows"] == 2
    (table_file,) = Path(run_dir, "files", "media", "table").glob("ranking_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:4] == ["rank", "setting", "run", "state"]
    assert [row[0] for row in table["data"]] == [1, 2]


def test_plot_writes_training_loss_png(tmp_path, capsys):
    run_dir = write_run_dir(tmp_path / "run", synthetic_losses(30, 0.05, 0.05, seed=1), batch_size=4, overrides={})
    code, out, _ = run_main(capsys, "plot", str(run_dir))
    assert code == 0 and (run_dir / "training_loss.png").stat().st_size > 1000
    code, _, err = run_main(capsys, "plot", str(tmp_path / "nowhere"))
    assert code == 2 and "no such folder" in err


def test_cli_starts_without_torch(tmp_path):
    completed = subprocess.run([sys.executable, "-X", "importtime", "-m", "analysis", "--help"],
                               capture_output=True, text=True, cwd=ROOT)
    assert completed.returncode == 0 and "rank" in completed.stdout
    assert "torch" not in completed.stderr and "transformers" not in completed.stderr
    garbage = subprocess.run([sys.executable, "-m", "analysis", "rank", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert garbage.returncode == 2 and garbage.stderr.startswith("analysis: ") and "Traceback" not in garbage.stderr


def test_sweep_report_has_remedies_and_importance(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "multirun")
    storage = f"sqlite:///{tmp_path / 'notes.db'}"
    study = optuna.create_study(study_name="notes", storage=storage)
    for index, remedy in enumerate(["baseline", "lower_lr", "more_warmup", "clip_harder", "shuffle"]):
        trial = study.ask({"optimizer.lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)})
        trial.set_user_attr("ablation", remedy)
        trial.set_user_attr("run_dirs", [str(sweep / str(index))])
        study.tell(trial, 1.0)
    report = tmp_path / "report" / "sweep.md"
    code, out, err = run_main(capsys, "rank", str(sweep), "--storage", storage, "--report", str(report), "--wide")
    assert code == 0, err
    text = report.read_text()
    assert "## Remedies (one change at a time)" in text and "| lower_lr | level (smoothed_loss) |" in text
    assert "| PedAnova | optimizer.lr |" in text
    assert (report.parent / "sweep_ablation.png").stat().st_size > 1000
    assert "trial-0" in out  # the run dirs carry their trials' names


def test_a_sweep_dirs_trials_csv_stands_in_for_the_study(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "multirun" / "12-00-00", runs=3)
    study = optuna.create_study()
    for index, remedy in enumerate(["baseline", "lower_lr", "larger_batch", "shuffle"]):
        trial = study.ask({"optimizer.lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)})
        trial.set_user_attr("ablation", remedy)
        # trial 3 ran in another sweep dir of the same study (a resumed sweep): not one of these runs
        trial.set_user_attr("run_dirs", [str(sweep / str(index)) if index < 3 else "multirun/elsewhere/0"])
        study.tell(trial, 1.0)
    study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs")).to_csv(sweep / "trials.csv", index=False)
    code, out, err = run_main(capsys, "rank", str(sweep), "--wide")
    assert code == 0, err
    assert all(f"trial-{number}" in out for number in (0, 1, 2)) and "trial-3" not in out
    assert "Remedies (one change at a time)" in out and "larger_batch" in out
