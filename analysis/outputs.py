"""The ranking as rows of plain values, and the terminal/CSV/JSON/W&B forms of those rows.

Every output (terminal, files, report, W&B) is built from `table_rows`, so their numbers agree.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.eval_results import COLUMN_PREFIX, columns_of, heldout_columns, heldout_verdict
from analysis.ranking import Ranking
from analysis.sweep import Effect

FIGURE_COLUMNS = ("noise", "descent", "tail_change", "still_falling", "spikes", "points")
THROUGHPUT_COLUMNS = ("samples_per_s", "tokens_per_s")
MEAN_OVER_REPEATS = ("noise", "descent", "tail_change")  # shown as the mean over a row's repeats, as remedies use them


@dataclass
class Findings:
    """Everything one `rank` produced, handed as one piece to every output (terminal, JSON, report)."""

    ranking: Ranking
    rows: list[dict[str, Any]]
    effects: list[Effect]
    importances: dict[str, dict[str, float]]
    messages: list[str]


def table_rows(ranking: Ranking, top: int | None = None) -> list[dict[str, Any]]:
    """One dict per ranking row: rank, run, state, value, spread, repeats, flags, the diagnosis, eval
    loss, held-out metrics (eval.json, when any run has one) and the params that vary between runs.
    `top` keeps the first `top` ranked rows and all unranked."""
    heldout_keys = columns_of([row.run.heldout for row in ranking.rows])
    rows = []
    for row in ranking.rows:
        if top is not None and row.rank is not None and row.rank > top:
            continue
        figures = row.diagnosis.as_dict() if row.diagnosis else {}
        figures.update({key: statistics.fmean(row.figure_values(key)) for key in MEAN_OVER_REPEATS if row.figure_values(key)})
        entry: dict[str, Any] = {
            "rank": row.rank,
            "run": row.name,
            "state": row.run.status,
            "source": row.run.source,
            "group": row.group,
            ranking.by: row.value,
            "spread": row.spread,
            "repeats": len(row.repeats),
            "flags": "; ".join(row.flags),
        }
        entry.update({key: figures.get(key) for key in FIGURE_COLUMNS})
        if ranking.by != "eval_loss":
            entry["eval_loss"] = row.run.eval_loss
        entry.update({key: row.run.throughput.get(key) for key in THROUGHPUT_COLUMNS})
        heldout = heldout_columns(row.run.heldout)
        entry.update({key: heldout.get(key) for key in heldout_keys})
        entry.update({key: row.run.params.get(key) for key in ranking.varying_params})
        entry["path"] = row.run.path
        rows.append(entry)
    return rows


def display(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


TERMINAL_FIGURES = {"noise": "noise", "descent": "descent", "tail_change": "tail", "spikes": "spikes", "eval_loss": "eval_loss"}
NON_TERMINAL_WIDTH = 160


def compact_params(row: dict[str, Any], keys: list[str]) -> str:
    """"lr=0.002 per_device_batch_size=8": the last part of each varied key, enough to tell runs apart."""
    return " ".join(f"{key.rsplit('.', 1)[-1]}={display(row[key])}" for key in keys if row.get(key) is not None)


def readable_table(ranking: Ranking, rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and text cells as people read them (terminal and report alike): the value with its
    spread, the diagnosis, and the varied params in one column."""
    figures = {key: header for key, header in TERMINAL_FIGURES.items() if key != ranking.by}
    figures.update({key: key for key in (rows[0] if rows else {}) if key.startswith(COLUMN_PREFIX)})
    grouped = len(ranking.groups) > 1
    header = [*(["group"] if grouped else []), "#", "run", "state", ranking.by, *figures.values(), "flags", "params"]
    lines = []
    for row in rows:
        value = display(row[ranking.by])
        if row["spread"] is not None:
            value += f" ± {display(row['spread'])} (n={row['repeats']})"
        lines.append([
            *([row["group"]] if grouped else []), display(row["rank"]), row["run"], row["state"], value,
            *(display(row[key]) for key in figures),
            row["flags"], compact_params(row, ranking.varying_params),
        ])
    return header, lines


def heldout_messages(ranking: Ranking) -> list[str]:
    """Whether the run best by the ranking is also best on held-out data (eval.json), in words."""
    by = "smoothed training loss" if ranking.by == "smoothed_loss" else ranking.by
    return heldout_verdict([(row.name, row.run.heldout) for row in ranking.rows if row.rank is not None], by)


def effect_lines(effects: list[Effect], value_label: str) -> list[list[str]]:
    return [
        [
            e.remedy,
            f"level ({value_label})" if e.figure == "value" else e.figure,
            display(e.baseline),
            display(e.remedy_value),
            display(e.change),
            "-" if e.relative is None else f"{100 * e.relative:+.1f}%",
            display(e.spread),
            e.stopped or ("within noise" if e.within_noise else ("" if e.spread is not None else "no repeats to judge")),
        ]
        for e in effects
    ]


EFFECT_HEADER = ["remedy", "figure", "baseline", "with remedy", "change", "relative", "seed spread", "call"]


def importance_lines(importances: dict[str, dict[str, float]]) -> list[list[str]]:
    return [[evaluator, param, f"{value:.3f}"] for evaluator, values in importances.items() for param, value in values.items()]


IMPORTANCE_HEADER = ["evaluator", "param", "importance"]


def sweep_tables(findings: Findings) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, text lines) of the ranking, the remedies and the importances: terminal and report alike."""
    header, lines = readable_table(findings.ranking, findings.rows)
    return [
        ("Ranking", header, lines),
        ("Remedies (one change at a time)", EFFECT_HEADER, effect_lines(findings.effects, findings.ranking.by)),
        ("Parameter importance", IMPORTANCE_HEADER, importance_lines(findings.importances)),
    ]


def print_tables(findings: Findings) -> None:
    """The ranking (titled with its budget and time constant), then remedies and importances when there are any."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=NON_TERMINAL_WIDTH)
    ranking = findings.ranking
    for title, header, lines in sweep_tables(findings):
        if title != "Ranking" and not lines:
            continue
        table = Table(title=ranking.describe() if title == "Ranking" else title, title_justify="left")
        for column in header:
            table.add_column(column, overflow="fold", justify="right" if column in ("#", ranking.by) else "left")
        for line in lines:
            table.add_row(*line)
        console.print(table)
    for message in findings.messages:
        console.print(message, style="dim", markup=False)


def write_csv(ranking: Ranking, rows: list[dict[str, Any]], out_path: str | Path) -> None:
    """One line per row; every line also names the budget, time constant and unit it was read with."""
    reading = {"budget": ranking.budget, "time_constant": ranking.time_constant, "unit": ranking.unit}
    with open(out_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*(rows[0] if rows else ["rank"]), *reading])
        writer.writeheader()
        writer.writerows({**row, **reading} for row in rows)


def write_json(findings: Findings, rows: list[dict[str, Any]], out_path: str | Path) -> None:
    """Every row (not only the top ones shown), the remedies and importances, at full precision."""
    ranking = findings.ranking
    document = {
        "description": ranking.describe(),
        "by": ranking.by,
        "direction": ranking.direction,
        "unit": ranking.unit,
        "budget": ranking.budget,
        "time_constant": ranking.time_constant,
        "seed_spread": ranking.seed_spread,
        "groups": [dataclasses.asdict(group) for group in ranking.groups],
        "rows": rows,
        "ablation": [
            {"remedy": e.remedy, "figure": e.figure, "baseline": e.baseline, "value": e.remedy_value,
             "change": e.change, "relative": e.relative, "seed_spread": e.spread, "within_noise": e.within_noise}
            for e in findings.effects
        ],
        "importance": findings.importances,
        "messages": findings.messages,
    }
    Path(out_path).write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")


def log_to_wandb(ranking: Ranking, rows: list[dict[str, Any]], project: str, group: str | None) -> str:
    """The ranking as a wandb.Table in the study's group (offline without WANDB_API_KEY); returns the run dir."""
    import wandb

    columns = list(rows[0]) if rows else ["rank"]
    typed = {"rank", ranking.by, "spread", "repeats", "eval_loss", *FIGURE_COLUMNS, *THROUGHPUT_COLUMNS,
             *(key for key in columns if key.startswith(COLUMN_PREFIX))}

    def cell(key: str, value: Any) -> Any:
        """Numbers stay numbers (sortable in W&B); params become text, since W&B refuses a column whose
        rows mix types and a param may be a number in one source and text in another."""
        return value if key in typed or value is None else str(value)

    table = wandb.Table(columns=columns, data=[[cell(key, row[key]) for key in columns] for row in rows])
    mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    run = wandb.init(project=project, group=group, job_type="analysis", name="ranking", mode=mode,
                     config={"description": ranking.describe(), "budget": ranking.budget,
                             "time_constant": ranking.time_constant, "unit": ranking.unit, "by": ranking.by})
    run.log({"ranking": table})
    run_dir = run.dir
    run.finish()
    return str(Path(run_dir).parent)
