"""README's commands run as a user runs them: the quickstart, and the own-data recipe on a data set of our own.

The commands and the dataset_info.json entry are read out of README.md's fenced blocks under their headings,
never copied here, so an edit that breaks the README's recipe (a renamed option, a wrong entry) fails here.
Each command runs with overrides that make it small (the tiny model, a budget of a few dozen samples, two
trials) and with its placeholder paths (`/data/...`, `multirun/DATE/TIME`) pointed at this test's own.
"""
import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_train
from runs.files import RESULT_FILE

README = ROOT / "README.md"
QUICKSTART = "Quickstart"
OWN_DATA = "Your data"
SMALL_RUN = {"trainer.max_samples_seen": "48", "trainer.logging_steps": "1", "trainer.save_steps": "1000"}
SMALL_SWEEP = {**SMALL_RUN, "hydra.sweeper.n_trials": "2"}
SMALL_JUDGE = ["--limit", "2", "--max-new-tokens", "8"]  # generation is most of a judge's time on a CPU


def section(heading_start: str) -> str:
    """The text of the README's `## ` section whose heading starts with `heading_start`."""
    sections = re.split(r"^## ", README.read_text(encoding="utf-8"), flags=re.MULTILINE)
    found = [text for text in sections if text.startswith(heading_start)]
    assert len(found) == 1, f"README.md has {len(found)} sections headed '## {heading_start}...'"
    return found[0]


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks in `text`, indented blocks (inside a list item) included."""
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, flags=re.MULTILINE | re.DOTALL)


def commands(text: str, program: str) -> list[list[str]]:
    """The command lines of the ```bash blocks that start with `program`, as argv lists: continuation lines
    joined, comments dropped, as the shell reads them."""
    found = []
    for block in fenced(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[: len(program.split())] == program.split():
                found.append(words)
    assert found, f"no `{program}` command in the README section:\n{text[:300]}"
    return found


def with_overrides(args: list[str], overrides: dict[str, str]) -> list[str]:
    """`args` with each `key=value` in `overrides` replacing the README's value for that key, or appended."""
    replaced = [f"{key}={overrides[key]}" if (key := arg.split("=", 1)[0]) in overrides else arg for arg in args]
    given = {arg.split("=", 1)[0] for arg in args}
    return replaced + [f"{key}={value}" for key, value in overrides.items() if key not in given]


def override_value(args: list[str], key: str) -> str:
    values = [arg.split("=", 1)[1] for arg in args if arg.startswith(f"{key}=")]
    assert len(values) == 1, f"the README's command {' '.join(args)} should set {key}= once"
    return values[0]


def sweep_dirs(project_root: Path) -> list[Path]:
    return sorted(path.parent for path in project_root.glob("multirun/*/*/trials.csv"))


def run_module(argv: list[str], cwd: Path, sweep_dir: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`python -m analysis ...` / `python -m judge ...` as written (plus `extra`), the README's sweep dir
    placeholder made this test's."""
    args = [str(sweep_dir) if arg.startswith("multirun/") else arg for arg in argv[1:]] + list(extra)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "WANDB_MODE": "offline"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def finished_trials(sweep_dir: Path) -> list[dict]:
    """The study's trials that ran to their end or were stopped by the pruner (the notes presets race
    each remedy against the baseline, so a remedy may be stopped)."""
    with open(sweep_dir / "trials.csv", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("state") in ("COMPLETE", "PRUNED")]


@pytest.mark.slow
def test_quickstart_commands_run_as_written(tmp_path, cache_dir):
    text = section(QUICKSTART)
    runs = commands(text, "python train.py")
    assert ["python", "train.py", "experiment=quickstart"] in runs, "the quickstart's first command is its one run"
    for argv in runs:
        sweep = any(arg.startswith("sweep=") for arg in argv)
        run_train(with_overrides(argv[2:], SMALL_SWEEP if sweep else SMALL_RUN), tmp_path, cache_dir)
    results = [json.loads(path.read_text()) for path in tmp_path.glob(f"outputs/*/*/{RESULT_FILE}")]
    assert [result["status"] for result in results] == ["completed"]
    [sweep_dir] = sweep_dirs(tmp_path)
    assert len(finished_trials(sweep_dir)) == 2
    for argv in commands(text, "python -m analysis"):
        run_module(argv, tmp_path, sweep_dir)
    assert (tmp_path / "report.html").is_file()


def write_own_data(data_dir: Path, info: dict) -> str:
    """Our own data set in the README entry's file and columns (the demo consultations' questions and answers,
    as a user's CSV or JSON file); returns the entry's name."""
    [(name, entry)] = info.items()
    columns = entry["columns"]
    demo = json.loads((ROOT / "data" / "demo_yiliao.json").read_text(encoding="utf-8"))[:80]
    rows = [{columns["prompt"]: row["instruction"], columns["response"]: row["output"]} for row in demo]
    data_dir.mkdir(parents=True)
    path = data_dir / entry["file_name"]
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows), encoding="utf-8")
    (data_dir / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return name


@pytest.mark.slow
def test_own_data_recipe_runs_on_a_generated_data_set(tmp_path, cache_dir):
    text = section(OWN_DATA)
    [entry] = fenced(text, "json")
    data_dir = tmp_path / "my_data"
    name = write_own_data(data_dir, json.loads(entry))
    [argv] = commands(text, "python train.py")
    assert override_value(argv, "task.dataset") == name, "the sweep command trains on the README's dataset_info entry"
    override_value(argv, "task.dataset_dir")  # the README shows where the data dir goes; this test points it at its own
    run_train(with_overrides(argv[2:], {**SMALL_SWEEP, "model": "tiny", "task.dataset_dir": str(data_dir)}),
              tmp_path, cache_dir)
    [sweep_dir] = sweep_dirs(tmp_path)
    assert len(finished_trials(sweep_dir)) == 2
    results = [json.loads(path.read_text()) for path in sweep_dir.glob(f"*/{RESULT_FILE}")]
    assert all(result["status"] in ("completed", "pruned") for result in results) and len(results) == 2
    for argv in commands(text, "python -m analysis"):
        ranked = run_module(argv, tmp_path, sweep_dir)
        assert "eval_loss" in ranked.stdout
    assert (tmp_path / "report.html").is_file()
    for argv in commands(text, "python -m judge"):
        run_module(argv, tmp_path, sweep_dir, extra=SMALL_JUDGE)
    assert (tmp_path / "reports" / "judge" / "serve.sh").is_file()
