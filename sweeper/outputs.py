"""What a sweep leaves in its sweep dir, and what it prints per finished trial: one plain line, and on
a terminal a sweep-level progress bar under it (trials done of n_trials, best so far). The bar is
printed, not redrawn in place: launchers write their jobs' logs to the same terminal at any moment,
which a live display would garble.

optimization_results.yaml has the official hydra-optuna-sweeper's keys, so tools that read it keep
working; trials.csv ranks every trial of the study (from every process that worked on it);
best_overrides.txt re-runs the best trial as a single run:
`xargs -d '\\n' -a <sweep_dir>/best_overrides.txt python train.py`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress_bar import ProgressBar
from rich.table import Table

from runs import attrs
from runs.files import BEST_OVERRIDES_FILE, SWEEP_RESULTS_FILE, TRIALS_FILE


_STATE_STYLE = {TrialState.COMPLETE: "green", TrialState.PRUNED: "yellow", TrialState.FAIL: "red"}
_console = Console(highlight=False)
BAR_WIDTH = 40


def print_progress(
    trial: FrozenTrial, changes: list[str], finished: int, n_trials: int, best: FrozenTrial | None
) -> None:
    """One line per finished trial: where the study stands, what this trial changed (its overrides
    beyond the sweep's fixed ones) and how it ended."""
    style = _STATE_STYLE.get(trial.state, "white")
    value = ", ".join(f"{v:.4g}" for v in trial.values) if trial.values else "-"
    params = " ".join(changes)
    ablation = trial.user_attrs.get(attrs.ABLATION)
    line = f"[{finished}/{n_trials}] trial {trial.number} [{style}]{trial.state.name}[/{style}] {value}"
    if ablation:
        line += f" (ablation: {ablation})"
    if attrs.COPY_OF in trial.user_attrs:
        line += f" (same overrides as trial {trial.user_attrs[attrs.COPY_OF]}: not trained again)"
    line += f" | {params or 'base config'}"
    if best is not None:
        line += f" | best {best.value:.4g} (trial {best.number})"
    reason = trial.user_attrs.get("reason")
    if reason and trial.state != TrialState.COMPLETE and "copy_of" not in trial.user_attrs:
        line += f" | {reason}"
    _console.print(line, soft_wrap=True)
    if _console.is_terminal:
        _console.print(_progress_bar(finished, n_trials, best))


def _progress_bar(finished: int, n_trials: int, best: FrozenTrial | None) -> Table:
    """`━━━━━━━━━╸━━━━━━━  3/6 trials, best 4.728 (trial 2)`"""
    row = Table.grid(padding=(0, 2))
    summary = f"{finished}/{n_trials} trials"
    if best is not None:
        summary += f", best {best.value:.4g} (trial {best.number})"
    row.add_row(ProgressBar(total=n_trials, completed=min(finished, n_trials), width=BAR_WIDTH), summary)
    return row


def write_outputs(study: optuna.Study, sweep_dir: str) -> dict[str, Path]:
    """Writes the three files from the study as the storage holds it now; returns their paths."""
    directory = Path(sweep_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": directory / SWEEP_RESULTS_FILE,
        "trials": directory / TRIALS_FILE,
        "best_overrides": directory / BEST_OVERRIDES_FILE,
    }
    OmegaConf.save(OmegaConf.create(_results(study)), paths["results"])
    ranked_trials(study).to_csv(paths["trials"], index=False)
    best = best_trials(study)
    if best:
        overrides = ["hydra.mode=RUN", *best[0].user_attrs.get(attrs.OVERRIDES, [])]
        paths["best_overrides"].write_text("\n".join(overrides) + "\n")
    return paths


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best completed trial (single objective) or the Pareto front; [] when none completed."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    return [study.best_trial] if len(study.directions) == 1 else list(study.best_trials)


def _results(study: optuna.Study) -> dict[str, Any]:
    best = best_trials(study)
    if len(study.directions) > 1:
        return {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in best]}
    if not best:
        return {"name": "optuna", "best_params": None, "best_value": None}
    return {"name": "optuna", "best_params": best[0].params, "best_value": best[0].value}


def ranked_trials(study: optuna.Study) -> Any:
    """Every trial as a DataFrame row (Optuna's own trials_dataframe), best first: completed by value,
    then pruned by their last reported value, then failed and unfinished ones."""
    value_attr = "value" if len(study.directions) == 1 else "values"
    frame = study.trials_dataframe(attrs=("number", value_attr, "state", "params", "user_attrs", "duration"))
    if frame.empty:
        return frame
    # to_timedelta: with only unfinished trials the column holds None, not timedeltas
    frame["duration"] = pd.to_timedelta(frame["duration"]).dt.total_seconds()
    value_column = "value" if value_attr == "value" else "values_0"
    state_order = {TrialState.COMPLETE.name: 0, TrialState.PRUNED.name: 1}
    frame["_state_rank"] = frame["state"].map(lambda state: state_order.get(state, 2))
    ascending = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    frame = frame.sort_values(["_state_rank", value_column], ascending=[True, ascending], na_position="last")
    frame = frame.drop(columns="_state_rank")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame
