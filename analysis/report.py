"""The report: HTML with its PNGs embedded (one file to mail or attach), or Markdown with the PNGs
written beside it (for a repo or a wiki). Both are built from the same rows as the terminal table."""
from __future__ import annotations

import base64
import html
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.outputs import sweep_tables
from analysis.plots import plot_ablation, plot_overlay, plot_param_scatter, plot_run
from analysis.ranking import Ranking
from analysis.records import AnalysisInputError
from analysis.sweep import Effect

CURVES_IN_REPORT = 5


@dataclass
class ReportContent:
    ranking: Ranking
    rows: list[dict[str, Any]]
    effects: list[Effect]
    importances: dict[str, dict[str, float]]
    messages: list[str]
    figures: list[tuple[str, Path]] = field(default_factory=list)


def draw_figures(content: ReportContent, folder: Path, stem: str, top: int) -> None:
    """The overlay, scatters, ablation bars and the top runs' LLaMA-Factory-style curves, as PNGs in `folder`."""
    ranking = content.ranking
    candidates = [
        ("Top runs, smoothed as ranked", plot_overlay(ranking, top, folder / f"{stem}_overlay.png")),
        ("Parameters against the ranked value", plot_param_scatter(ranking, folder / f"{stem}_params.png")),
        ("Remedies against the baseline", plot_ablation(content.effects, folder / f"{stem}_ablation.png", ranking.by)),
    ]
    ranked = [row for row in ranking.rows if row.rank is not None and len(row.run.series.loss) >= 2]
    for row in ranked[: min(top, CURVES_IN_REPORT)]:
        path = plot_run(row.run, folder / f"{stem}_run{row.rank}.png")
        candidates.append((f"#{row.rank} {row.name}: training loss as LLaMA-Factory draws it", path))
    content.figures = [(title, path) for title, path in candidates if path is not None]


def html_table(header: list[str], lines: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in line) + "</tr>" for line in lines)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    rows = [header, ["---"] * len(header), *lines]
    return "\n".join("| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows)


def sections(content: ReportContent) -> list[tuple[str, list[str], list[list[str]]]]:
    """The tables exactly as the terminal shows them (full precision and paths are in --csv / --json)."""
    return sweep_tables(content.ranking, content.rows, content.effects, content.importances)


STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}img{max-width:100%}"
)


def write_html(content: ReportContent, out_path: Path) -> None:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>lorasweep report</title><style>{STYLE}</style>"
             f"</head><body><h1>lorasweep report</h1><p>{html.escape(content.ranking.describe())}</p>"]
    for title, header, lines in sections(content):
        if lines:
            parts.append(f"<h2>{html.escape(title)}</h2>{html_table(header, lines)}")
    parts.extend(f"<p>{html.escape(message)}</p>" for message in content.messages)
    for title, path in content.figures:
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    out_path.write_text("".join(parts), encoding="utf-8")


def write_markdown(content: ReportContent, out_path: Path) -> None:
    parts = ["# lorasweep report", content.ranking.describe()]
    for title, header, lines in sections(content):
        if lines:
            parts.extend([f"## {title}", markdown_table(header, lines)])
    parts.extend(f"- {message}" for message in content.messages)
    for title, path in content.figures:
        parts.extend([f"## {title}", f"![{title}]({path.name})"])
    out_path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")


def write_report(content: ReportContent, out_path: str | Path, top: int) -> Path:
    """FILE.html (self-contained) or FILE.md (PNGs beside it); the suffix chooses."""
    out_path = Path(out_path)
    if out_path.suffix not in (".html", ".md"):
        raise AnalysisInputError(f"{out_path}: a report is FILE.html or FILE.md; change the suffix")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix == ".md":
        draw_figures(content, out_path.parent, out_path.stem, top)
        write_markdown(content, out_path)
        return out_path
    with tempfile.TemporaryDirectory() as folder:
        draw_figures(content, Path(folder), out_path.stem, top)
        write_html(content, out_path)
    return out_path
