"""The comparison as people read it: a metrics table (base model first, then always answering the
commonest training label for a label task), the verdict in words, and the side-by-side answers (base vs
each adapter), in the terminal, a Markdown or HTML file, and W&B."""
from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.outputs import display
from analysis.report import STYLE, html_table, markdown_table
from judge.errors import JudgeInputError
from judge.heldout import Prompt
from judge.judging import ModelResult

SHOWN_METRICS = ("eval_loss", "perplexity", "accuracy", "macro_f1", "precision", "recall", "f1", "rouge_l_chars", "unparseable")


@dataclass
class Comparison:
    results: list[ModelResult]
    prompts: list[Prompt]
    verdict: list[str]
    serve_command: str
    rows: int
    metric: str
    majority: ModelResult | None = None  # always answering the commonest training label (label tasks)


def table_rows(comparison: Comparison) -> list[ModelResult]:
    """The metrics table's rows: the base model, the majority class where there is one, the adapters."""
    base, *adapters = comparison.results
    return [base, *([comparison.majority] if comparison.majority else []), *adapters]


def metrics_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    present = [key for key in SHOWN_METRICS if any(key in result.metrics for result in table_rows(comparison))]
    header = ["model", "training rank", "smoothed loss", *present]
    lines = []
    for result in table_rows(comparison):
        candidate = result.candidate
        lines.append([
            result.name,
            display(candidate.rank if candidate else None),
            display(candidate.smoothed_loss if candidate else None),
            *(display(result.metrics.get(key)) for key in present),
        ])
    return header, lines


def side_by_side_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["prompt", "reference", *(result.name for result in comparison.results)]
    lines = [
        [prompt.text, prompt.reference or "", *(result.side_answers[index] for result in comparison.results)]
        for index, prompt in enumerate(comparison.prompts)
    ]
    return header, lines


def title(comparison: Comparison) -> str:
    return f"Held-out comparison ({comparison.metric} metric, {comparison.rows} held-out rows, greedy decoding)"


def write_report(comparison: Comparison, out_path: Path) -> Path:
    """FILE.md or FILE.html (self-contained); the suffix chooses."""
    if out_path.suffix not in (".md", ".html"):
        raise JudgeInputError(f"{out_path}: a report is FILE.html or FILE.md; change the suffix")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tables = [("Metrics", *metrics_table(comparison)), ("Side by side", *side_by_side_table(comparison))]
    if out_path.suffix == ".md":
        parts = [f"# {title(comparison)}"]
        for heading, header, lines in tables:
            parts += [f"## {heading}", markdown_table(header, [[cell.replace("\n", "<br>") for cell in line] for line in lines])]
            if heading == "Metrics":
                parts += [f"- {sentence}" for sentence in comparison.verdict]
        parts += ["## Serving", f"```\n{comparison.serve_command}\n```"]
        out_path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
        return out_path
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>lorasweep held-out comparison</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title(comparison))}</h1>"]
    for heading, header, lines in tables:
        parts.append(f"<h2>{heading}</h2>{html_table(header, lines)}")
        if heading == "Metrics":
            parts.extend(f"<p>{html.escape(sentence)}</p>" for sentence in comparison.verdict)
    parts.append(f"<h2>Serving</h2><pre>{html.escape(comparison.serve_command)}</pre></body></html>")
    out_path.write_text("".join(parts), encoding="utf-8")
    return out_path


def print_comparison(comparison: Comparison) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for heading, (header, lines) in ((title(comparison), metrics_table(comparison)), ("Side by side", side_by_side_table(comparison))):
        table = Table(title=heading, title_justify="left")
        for column in header:
            table.add_column(column, overflow="fold")
        for line in lines:
            table.add_row(*line)
        console.print(table)
        if heading != "Side by side":
            for sentence in comparison.verdict:
                console.print(sentence, markup=False)


def log_to_wandb(comparison: Comparison, logger_cfg: Any) -> str:
    """Both tables as W&B Tables in the study's group (the runs' logger.group), offline without an API key."""
    import wandb

    mode = logger_cfg.get("mode", "auto")
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    run = wandb.init(project=logger_cfg.project, entity=logger_cfg.get("entity"), group=logger_cfg.get("group"),
                     job_type="judge", name="held-out comparison", mode=mode, config={"metric": comparison.metric, "rows": comparison.rows})
    metric_header, _ = metrics_table(comparison)
    numeric = [[result.name, result.candidate.rank if result.candidate else None,
                result.candidate.smoothed_loss if result.candidate else None,
                *(result.metrics.get(key) for key in metric_header[3:])] for result in table_rows(comparison)]
    side_header, side_lines = side_by_side_table(comparison)
    run.log({"heldout_metrics": wandb.Table(columns=metric_header, data=numeric),
             "side_by_side": wandb.Table(columns=side_header, data=side_lines)})
    run_dir = run.dir
    run.finish()
    return str(Path(run_dir).parent)
