"""`python -m analysis rank ...` and `python -m analysis plot RUN_DIR`.

With no paths and no --storage, `rank` reads the study from the storage URL in $LORASWEEP_STORAGE (where
a password belongs: not on the command line, where `ps` and the shell history show it).

Exit codes: 0 when every input was read cleanly; 2 when an input was bad (one line per problem on
stderr, the runs that could be read are still ranked and written) or nothing could be ranked.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from analysis.loading import load_runs
from analysis.records import UNITS, AnalysisInputError
from runs.files import LOSS_PLOT_FILE
from runs.storage import STORAGE_ENV

EXIT_BAD_INPUT = 2
DEFAULT_TOP = 10
DEFAULT_WANDB_PROJECT = "lorasweep"


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rank = commands.add_parser("rank", help="rank runs and sweeps by smoothed loss at a common budget")
    rank.add_argument("paths", nargs="*", help="run dirs, multirun folders, LLaMA-Factory dirs, wandb/ folders, globs, "
                      "or wandb:ENTITY/PROJECT[/GROUP]")
    rank.add_argument("--storage", help="Optuna storage: a URL (sqlite:///x.db, journal:x.log, postgresql://...), a .db "
                      f"file or a journal file (default with no paths: ${STORAGE_ENV})")
    rank.add_argument("--study", help="study name in --storage (optional when it holds only one)")
    rank.add_argument("--top", type=int, default=DEFAULT_TOP, help="rows to show and runs to plot (default %(default)s)")
    rank.add_argument("--by", default="smoothed_loss", help="smoothed_loss (default), eval_loss, or any recorded metric")
    rank.add_argument("--direction", choices=("minimize", "maximize"), default="minimize")
    rank.add_argument("--unit", choices=UNITS, default="samples", help="x axis of the smoothing and budget")
    rank.add_argument("--budget", type=positive, help="common budget in --unit (default: the smallest final "
                      "position among runs not shorter than half the median)")
    rank.add_argument("--time-constant", type=positive, help="in --unit (default: 10%% of the budget)")
    rank.add_argument("--wide", action="store_true", help="every column (params, diagnosis, held-out metrics, "
                      "flags), each row on one line; default: a table that fits 100 columns")
    rank.add_argument("--csv", type=Path, help="write the table as CSV")
    rank.add_argument("--json", type=Path, help="write table, ablation and importance as JSON")
    rank.add_argument("--report", type=Path, help="FILE.html (plots embedded) or FILE.md (plots beside it)")
    rank.add_argument("--wandb", action="store_true", help="log the table to W&B in the study's group")
    rank.add_argument("--wandb-project", help="default: the project of the W&B runs read, else "
                      f"{DEFAULT_WANDB_PROJECT!r} (conf/logger/wandb.yaml)")
    plot = commands.add_parser("plot", help="write RUN_DIR/training_loss.png as LLaMA-Factory draws it")
    plot.add_argument("run_dir", type=Path)
    plot.add_argument("--out", type=Path, help="where to write the PNG (default RUN_DIR/training_loss.png)")
    return parser


def report_problems(problems: Sequence[str]) -> None:
    for problem in problems:
        print(f"analysis: {problem}", file=sys.stderr)


def rank_command(args: argparse.Namespace) -> int:
    from analysis.outputs import Findings, heldout_messages, log_to_wandb, print_tables, table_rows, write_csv, write_json
    from analysis.ranking import rank_runs
    from analysis.report import write_report
    from analysis.sweep import ablation_effects, param_importances
    from analysis.verdict import verdict_lines

    if not args.paths and not args.storage:
        args.storage = os.environ.get(STORAGE_ENV) or None
    if not args.paths and not args.storage:
        raise AnalysisInputError(f"nothing to read: give run dirs / folders / wandb:... paths, or --storage (or set {STORAGE_ENV})")
    if args.study and not args.storage:
        raise AnalysisInputError("--study needs --storage (where the study lives)")
    if args.report and args.report.suffix not in (".html", ".md"):
        raise AnalysisInputError(f"{args.report}: a report is FILE.html or FILE.md; change the suffix")
    if args.top < 1:
        raise AnalysisInputError(f"--top must be >= 1, got {args.top}")
    loaded = load_runs(args.paths, storage=args.storage, study=args.study)
    report_problems(loaded.problems)
    if not loaded.runs:
        raise AnalysisInputError("no usable runs to rank (see the messages above)")
    ranking = rank_runs(loaded.runs, by=args.by, unit=args.unit, budget=args.budget,
                        time_constant=args.time_constant, direction=args.direction)
    effects, ablation_message = ablation_effects(ranking)
    importances, messages = param_importances(ranking)
    messages = ranking.notes() + ([ablation_message] if ablation_message else []) + messages + heldout_messages(ranking)
    findings = Findings(ranking, table_rows(ranking, args.top), effects, importances, messages, verdict_lines(ranking))
    print_tables(findings, args.wide)
    if args.csv:
        write_csv(ranking, table_rows(ranking), args.csv)
    if args.json:
        write_json(findings, table_rows(ranking), args.json)
    if args.report:
        skipped = [f"input skipped or partly read: {problem}" for problem in loaded.problems]
        reported = dataclasses.replace(findings, messages=messages + skipped)
        print(f"report: {write_report(reported, args.report, args.top)}")
    if args.wandb:
        group = next((row.run.group for row in ranking.rows if row.run.group), None)
        project = args.wandb_project or next(
            (row.run.attrs["project"] for row in ranking.rows if row.run.attrs.get("project")), DEFAULT_WANDB_PROJECT
        )
        print(f"W&B run: {log_to_wandb(ranking, table_rows(ranking), project, group)}")
    return EXIT_BAD_INPUT if loaded.problems else 0


def plot_command(args: argparse.Namespace) -> int:
    from analysis.plots import plot_run

    if not args.run_dir.is_dir():
        raise AnalysisInputError(f"{args.run_dir}: no such folder")
    loaded = load_runs([str(args.run_dir)])
    report_problems(loaded.problems)
    if len(loaded.runs) != 1:
        raise AnalysisInputError(f"{args.run_dir}: expected one run here, found {len(loaded.runs)}; give one run dir")
    if len(loaded.runs[0].series.loss) < 2:
        raise AnalysisInputError(f"{args.run_dir}: fewer than 2 logged loss points, nothing to draw")
    out = args.out or args.run_dir / LOSS_PLOT_FILE
    print(f"wrote {plot_run(loaded.runs[0], out)}")
    return EXIT_BAD_INPUT if loaded.problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return rank_command(args) if args.command == "rank" else plot_command(args)
    except AnalysisInputError as error:
        report_problems([str(error)])
    except OSError as error:
        report_problems([f"cannot read or write {error.filename or ''}: {error.strerror or error}"])
    return EXIT_BAD_INPUT
