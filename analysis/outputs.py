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

from analysis.diagnosis import STILL_FALLING_BELOW
from analysis.eval_results import COLUMN_PREFIX, columns_of, heldout_columns, heldout_verdict
from analysis.ranking import RankedRow, Ranking
from analysis.settings import baseline_row, override_value, overrides_text, setting_name, shown_params
from analysis.sweep import Effect

FIGURE_COLUMNS = ("noise", "descent", "tail_change", "still_falling", "spikes", "points")
THROUGHPUT_COLUMNS = ("samples_per_s", "tokens_per_s")
MEAN_OVER_REPEATS = ("noise", "descent", "tail_change", "spikes", "points")  # a pooled row shows the mean of its repeats


@dataclass
class Findings:
    """Everything one `rank` produced, handed as one piece to every output (terminal, JSON, report)."""

    ranking: Ranking
    rows: list[dict[str, Any]]
    effects: list[Effect]
    importances: dict[str, dict[str, float]]
    messages: list[str]
    verdict: list[str]


def mean_of(values: list[Any]) -> float | None:
    numbers = [float(value) for value in values if value is not None]
    return statistics.fmean(numbers) if numbers else None


def pooled_figures(row: RankedRow) -> dict[str, Any]:
    """The diagnosis figures of a row: the mean over its repeats (the leader's own for one run)."""
    figures = row.diagnosis.as_dict() if row.diagnosis else {}
    figures.update({key: statistics.fmean(row.figure_values(key)) for key in MEAN_OVER_REPEATS if row.figure_values(key)})
    if len(row.diagnoses) > 1 and figures.get("tail_change") is not None:
        figures["still_falling"] = figures["tail_change"] < STILL_FALLING_BELOW
    return figures


def table_rows(ranking: Ranking, top: int | None = None) -> list[dict[str, Any]]:
    """One dict per ranking row: rank, setting (its remedy or changed params), run, state, value,
    spread, repeats, flags, the diagnosis, eval loss, held-out metrics (eval.json, when any run has one),
    throughput and the params that vary between runs. A row of repeats holds the mean over them of
    every figure; its params are its leader's, the seed left out. `top` keeps the first `top` ranked
    rows of each group and all unranked."""
    heldout_keys = columns_of([row.run.heldout for row in ranking.rows])
    baseline = baseline_row(ranking)
    params = shown_params(ranking) if any(len(row.members) > 1 for row in ranking.rows) else ranking.varying_params
    rows = []
    for row in ranking.rows:
        if top is not None and row.rank is not None and row.rank > top:
            continue
        figures = pooled_figures(row)
        entry: dict[str, Any] = {
            "rank": row.rank,
            "setting": setting_name(row, ranking, baseline),
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
            entry["eval_loss"] = mean_of([run.eval_loss for run in row.members])
        entry.update({key: mean_of([run.throughput.get(key) for run in row.members]) for key in THROUGHPUT_COLUMNS})
        heldout = [heldout_columns(run.heldout) for run in row.members]
        entry.update({key: mean_of([columns.get(key) for columns in heldout]) for key in heldout_keys})
        entry.update({key: row.run.params.get(key) for key in params})
        entry["path"] = row.run.path
        rows.append(entry)
    return rows


def display(value: Any) -> str:
    """A table cell: "-" for nothing, else the value as an override writes it (4 significant digits)."""
    return "-" if value is None else override_value(value)


WIDE_FIGURES = {"noise": "noise", "descent": "descent", "tail_change": "tail", "spikes": "spikes"}
NARROW_FIGURES = {"noise": "noise"}
NARROW_WIDTH = 100  # the default terminal table fits this many columns; --wide shows every column
WIDE_WIDTH = 1000  # --wide: every row on one line, however long (for `less -S` or a file)


def row_params(row: dict[str, Any], ranking: Ranking) -> str:
    """"lr=0.002 per_device_batch_size=8": the last part of each varied key, enough to tell runs apart."""
    return overrides_text({key: row[key] for key in ranking.varying_params if row.get(key) is not None}, short=True)


def short_flags(flags: str) -> str:
    """Each flag without its explanation in brackets: "within noise of #1", "too short"."""
    return "; ".join(flag.split(" (", 1)[0] for flag in flags.split("; ")) if flags else ""


def readable_table(ranking: Ranking, rows: list[dict[str, Any]], wide: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and text cells as people read them. Each row is named by its setting (remedy or changed
    params) and shows its value with the spread over its repeats (n). `wide` (--wide, the report): every
    figure, the held-out metrics, the params, the run and its full flags; otherwise a table that fits
    100 columns: the value, eval loss, noise, and the flags in short."""
    figures = {key: header for key, header in (WIDE_FIGURES if wide else NARROW_FIGURES).items() if key != ranking.by}
    if ranking.by != "eval_loss":
        figures["eval_loss"] = "eval_loss"
    if wide:
        figures.update({key: key for key in (rows[0] if rows else {}) if key.startswith(COLUMN_PREFIX)})
    grouped = len(ranking.groups) > 1
    if wide:
        header = [*(["group"] if grouped else []), "#", "setting", ranking.by, "n", *figures.values(), "params", "state",
                  "run", "flags"]
    else:
        header = ["#", "setting", ranking.by, "n", *figures.values(), "note"]
    lines = []
    for row in rows:
        value = display(row[ranking.by])
        if row["spread"] is not None:
            value += f" ± {row['spread']:.2g}"
        rank = display(row["rank"])
        cells = [value, str(row["repeats"]), *(display(row[key]) for key in figures)]
        if wide:
            lines.append([*([row["group"]] if grouped else []), rank, row["setting"], *cells, row_params(row, ranking),
                          row["state"], row["run"], row["flags"]])
        else:
            state = "" if row["state"] == "completed" else f"{row['state']}; "
            lines.append([f"{row['group']}{rank}" if grouped else rank, row["setting"], *cells, state + short_flags(row["flags"])])
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


def sweep_tables(findings: Findings, wide: bool = True) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, text lines) of the ranking, the remedies and the importances: terminal and report alike."""
    header, lines = readable_table(findings.ranking, findings.rows, wide)
    return [
        ("Ranking", header, lines),
        ("Remedies (one change at a time)", EFFECT_HEADER, effect_lines(findings.effects, findings.ranking.by)),
        ("Parameter importance", IMPORTANCE_HEADER, importance_lines(findings.importances)),
    ]


NARROW_LEFT_OUT = {"Remedies (one change at a time)": ("baseline", "with remedy")}  # columns shown only with --wide
NARROW_MAX_WIDTHS = {"setting": 32, "note": 20, "remedy": 22, "figure": 22}  # cut with an ellipsis; --wide shows them whole
NUMBER_COLUMNS = ("#", "n", "baseline", "with remedy", "change", "relative", "seed spread", "importance")


def narrowed(title: str, header: list[str], lines: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The table without the columns the 100-column view leaves to --wide."""
    keep = [index for index, column in enumerate(header) if column not in NARROW_LEFT_OUT.get(title, ())]
    return [header[index] for index in keep], [[line[index] for index in keep] for line in lines]


def print_tables(findings: Findings, wide: bool = False) -> None:
    """The verdict, then the ranking (titled with its budget and time constant), then remedies and
    importances when there are any, then the notes. One line per row: at most 100 columns (cells cut
    with an ellipsis), or with `wide` every column at its full width. Sentences wrap at the terminal's
    width; piped, each stays one line (for grep)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(width=WIDE_WIDTH if wide else NARROW_WIDTH)
    if not wide and console.is_terminal:
        console = Console(width=min(Console().width, NARROW_WIDTH))
    sentences = {"markup": False, "highlight": False, "soft_wrap": not console.is_terminal}
    for line in findings.verdict:
        console.print(line, **sentences)
    ranking = findings.ranking
    for title, header, lines in sweep_tables(findings, wide):
        if title != "Ranking" and not lines:
            continue
        if not wide:
            header, lines = narrowed(title, header, lines)
        console.print()
        console.print(ranking.describe() if title == "Ranking" else title, **sentences)
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
        for column in header:
            numeric = column in NUMBER_COLUMNS or column == ranking.by
            table.add_column(column, no_wrap=True, overflow="ellipsis", justify="right" if numeric else "left",
                             max_width=None if wide else NARROW_MAX_WIDTHS.get(column))
        for line in lines:
            table.add_row(*line)
        console.print(table)
    for message in findings.messages:
        console.print(message, style="dim", **sentences)


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
        "verdict": findings.verdict,
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
