"""The report: HTML with its PNGs embedded (one file to mail or attach), or Markdown with the PNGs
written beside it (for a repo or a wiki). Both are built from the same rows as the terminal table."""
from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Collection
from pathlib import Path

from analysis.outputs import Findings, sweep_tables
from analysis.plots import plot_ablation, plot_overlay, plot_param_scatter, plot_run
from analysis.records import AnalysisInputError

CURVES_IN_REPORT = 5


def draw_figures(findings: Findings, folder: Path, stem: str, top: int) -> list[tuple[str, Path]]:
    """The overlay, scatters, ablation bars and the top runs' LLaMA-Factory-style curves, as PNGs in `folder`."""
    ranking = findings.ranking
    candidates = [
        ("Top runs, smoothed as ranked", plot_overlay(ranking, top, folder / f"{stem}_overlay.png")),
        ("Parameters against the ranked value", plot_param_scatter(ranking, folder / f"{stem}_params.png")),
        ("Remedies against the baseline", plot_ablation(findings.effects, folder / f"{stem}_ablation.png", ranking.by,
                                                        ranking.direction)),
    ]
    curves = [
        row for row in ranking.rows
        if row.rank is not None and len(row.run.series.loss) >= 2 and not row.run.series.presmoothed
    ]
    for index, row in enumerate(curves[: min(top, CURVES_IN_REPORT)], start=1):
        path = plot_run(row.run, folder / f"{stem}_run{index}.png")
        candidates.append((f"#{row.rank} {row.name}: training loss as LLaMA-Factory draws it", path))
    return [(title, path) for title, path in candidates if path is not None]


WRAPPED_COLUMNS = ("setting", "params", "flags", "run")  # the report's texts that wrap at their spaces; numbers do not


def html_table(header: list[str], lines: list[list[str]], wrapped: Collection[str] | None = None) -> str:
    """An HTML table; with `wrapped`, only the cells of those columns wrap, the others stay on one line."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    classes = ["" if wrapped is None or column in wrapped else " class='nowrap'" for column in header]
    body = "".join(
        "<tr>" + "".join(f"<td{css}>{html.escape(cell)}</td>" for css, cell in zip(classes, line, strict=True)) + "</tr>"
        for line in lines
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    rows = [header, ["---"] * len(header), *lines]
    return "\n".join("| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows)


STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}"
    "td{max-width:30em}td.nowrap{white-space:nowrap}img{max-width:100%}"
    ".verdict{font-size:16px;border-left:4px solid #2a7;padding:0.2em 1em;background:#f4fbf7}"
)


def write_html(findings: Findings, figures: list[tuple[str, Path]], out_path: Path) -> None:
    verdict = "".join(f"<p>{html.escape(line)}</p>" for line in findings.verdict)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>lorasweep report</title><style>{STYLE}</style>"
             f"</head><body><h1>lorasweep report</h1><div class='verdict'>{verdict}</div>"
             f"<p>{html.escape(findings.ranking.describe())}</p>"]
    for title, header, lines in sweep_tables(findings):
        if lines:
            parts.append(f"<h2>{html.escape(title)}</h2>{html_table(header, lines, WRAPPED_COLUMNS)}")
    parts.extend(f"<p>{html.escape(message)}</p>" for message in findings.messages)
    for title, path in figures:
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    out_path.write_text("".join(parts), encoding="utf-8")


def write_markdown(findings: Findings, figures: list[tuple[str, Path]], out_path: Path) -> None:
    parts = ["# lorasweep report", "\n".join(f"> {line}\n>" for line in findings.verdict).rstrip(">\n"),
             findings.ranking.describe()]
    for title, header, lines in sweep_tables(findings):
        if lines:
            parts.extend([f"## {title}", markdown_table(header, lines)])
    parts.extend(f"- {message}" for message in findings.messages)
    for title, path in figures:
        parts.extend([f"## {title}", f"![{title}]({path.name})"])
    out_path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")


def write_report(findings: Findings, out_path: str | Path, top: int) -> Path:
    """FILE.html (self-contained) or FILE.md (PNGs beside it); the suffix chooses."""
    out_path = Path(out_path)
    if out_path.suffix not in (".html", ".md"):
        raise AnalysisInputError(f"{out_path}: a report is FILE.html or FILE.md; change the suffix")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix == ".md":
        write_markdown(findings, draw_figures(findings, out_path.parent, out_path.stem, top), out_path)
        return out_path
    with tempfile.TemporaryDirectory() as folder:
        write_html(findings, draw_figures(findings, Path(folder), out_path.stem, top), out_path)
    return out_path
