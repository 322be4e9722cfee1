"""`python -m judge SWEEP_DIR --task cate --top 3` or `python -m judge --storage sweeps/x.db --top 3`.

Judges the best runs of a sweep (by smoothed training loss) and the base model with no adapter on the
runs' own held-out rows, writes eval.json beside each run (joined by `python -m analysis rank`),
prints the metrics, the side-by-side answers and the `vllm serve` command, and writes them to --out.
Bad input: one line on stderr naming the file or option, exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from judge.errors import JudgeInputError
from judge.metrics import METRICS
from judge.selection import ADAPTER_CONFIG, Candidate
from sft.lifecycle.errors import ConfigError, DataError

EXIT_BAD_INPUT = 2
DEFAULT_OUT = Path("reports") / "judge"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m judge", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="sweep folders (multirun/DATE/TIME) or run dirs")
    parser.add_argument("--storage", help="Optuna storage of a sweep (sqlite:///x.db, a .db or journal file); its trials' run dirs are judged")
    parser.add_argument("--study", help="study name in --storage (optional when it holds only one)")
    parser.add_argument("--task", help="judge only runs of this task (task.name: cate, spo, yiliao, demo, ...)")
    parser.add_argument("--top", type=positive_int, default=3, help="how many of the best runs to judge (default %(default)s)")
    parser.add_argument("--metric", choices=METRICS, help="override the runs' task.metric")
    parser.add_argument("--prompts", type=Path, help="jsonl of {\"prompt\", \"system\"?, \"reference\"?} for the side-by-side table "
                        "(default: the first --side-by-side held-out rows)")
    parser.add_argument("--side-by-side", type=positive_int, default=5, help="held-out rows shown side by side (default %(default)s)")
    parser.add_argument("--limit", type=positive_int, help="judge only the first N held-out rows")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="rows per generation / loss batch (default %(default)s)")
    parser.add_argument("--max-new-tokens", type=positive_int, help="default: the longest held-out answer plus 8 tokens")
    parser.add_argument("--report", type=Path, help="FILE.md or FILE.html with the metrics, verdict and side-by-side answers")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where serve.sh, answers.jsonl and merged models go (default %(default)s)")
    parser.add_argument("--merge", action="store_true", help="also merge the adapter best on held-out data into the base "
                        "model and save it (safetensors) under --out/merged-NAME")
    return parser


def run(args: argparse.Namespace) -> int:
    from analysis.eval_results import heldout_verdict
    from judge.heldout import held_out, last_answer_span, read_prompts, side_by_side_prompts
    from judge.judging import Settings, eval_document, judge_all, majority_result, write_answers, write_eval_files
    from judge.metrics import PRIMARY
    from judge.models import AdapterSet, device, load_base
    from judge.report import Comparison, log_to_wandb, print_comparison, write_report
    from judge.runconfig import load_run_config, task_metric
    from judge.selection import adapter_settings, choose
    from judge.serve import merge_adapter, vllm_command, write_serve_script
    from judge.verdict import floor_lines, label_set_lines, same_answer_lines
    from sft.model.load import load_tokenizer, local_path

    if not args.paths and not args.storage:
        raise JudgeInputError("nothing to judge: give a sweep folder / run dirs, or --storage")
    if args.report and args.report.suffix not in (".md", ".html"):
        raise JudgeInputError(f"{args.report}: a report is FILE.html or FILE.md; change the suffix")
    candidates = choose(args.paths, args.storage, args.study, args.task, args.top)
    configs = {candidate.name: load_run_config(candidate.run_dir) for candidate in candidates}
    settings_of = {candidate.name: adapter_settings(candidate) for candidate in candidates}
    first = candidates[0]
    cfg = configs[first.name]
    base_name = local_path(cfg.model.name_or_path, cfg.paths.cache_dir, cfg.model.revision)
    check_same_base(candidates, settings_of, base_name)
    metrics = {task_metric(configs[c.name], c.run_dir, args.metric) for c in candidates}
    if len(metrics) > 1:
        raise JudgeInputError(f"the chosen runs use different metrics ({', '.join(sorted(metrics))}): judge one task at a time with --task NAME")
    metric = metrics.pop()
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    tokenizer.padding_side = "left"
    data = held_out(cfg, tokenizer, first.run_dir, args.limit, count_training_answers=metric == "label")
    for candidate in candidates[1:]:
        other = held_out(configs[candidate.name], tokenizer, candidate.run_dir, args.limit)
        if other.fingerprint != data.fingerprint:
            raise JudgeInputError(
                f"{candidate.run_dir}: held out other rows than {first.run_dir} (a different data seed, val_size or data), "
                "so their metrics would not compare; judge them separately"
            )
    side = read_prompts(args.prompts, tokenizer, cfg) if args.prompts else side_by_side_prompts(data, tokenizer, cfg.task.template, args.side_by_side)
    longest = max(end - start for start, end in map(last_answer_span, data.labels))
    base = load_base(cfg)
    settings = Settings(metric, args.batch_size, args.max_new_tokens or longest + 8, device(), str(base.dtype).removeprefix("torch."))
    adapters = AdapterSet(base, {candidate.name: candidate.run_dir for candidate in candidates})
    results = judge_all(adapters, candidates, data, side, tokenizer, settings)
    majority = majority_result(data)
    for path in write_eval_files(results, data, settings, majority):
        print(f"wrote {path}")
    print(f"answers: {write_answers(results, data, tokenizer, cfg.task.template, args.out)}")
    verdict = [*heldout_verdict([(result.name, eval_document(result, results[0], data, settings)) for result in results[1:]]),
               *floor_lines(results[1:], majority, metric), *same_answer_lines(results, data.references),
               *label_set_lines(data.training_answers, data.references, results)]
    command = vllm_command(base_name, {c.name: c.run_dir for c in candidates},
                           [int(settings_of[c.name]["r"]) for c in candidates])
    comparison = Comparison(results, side, verdict, command, len(data.input_ids), metric, majority)
    print_comparison(comparison)
    print(f"serve: {write_serve_script(command, args.out)}\n{command}")
    if args.report:
        print(f"report: {write_report(comparison, args.report)}")
    if args.merge:
        primary, direction = PRIMARY[metric]
        sign = 1.0 if direction == "minimize" else -1.0
        best = min(results[1:], key=lambda result: sign * result.metrics[primary])
        print(f"merged {best.name}: {merge_adapter(cfg, best.candidate.run_dir, tokenizer, args.out / f'merged-{best.name}')}")
    if cfg.logger.get("name") == "wandb":
        print(f"W&B run: {log_to_wandb(comparison, cfg.logger)}")
    return 0


def check_same_base(candidates: list[Candidate], settings_of: dict[str, dict], loaded: str) -> None:
    """Every adapter must sit on the base model that is loaded once for all of them. A recorded base
    with the same last path part counts as the same model (a moved cache, a hub id and its local copy)."""
    for candidate in candidates:
        recorded = str(settings_of[candidate.name].get("base_model_name_or_path"))
        if recorded != loaded and Path(recorded).name != Path(loaded).name:
            raise JudgeInputError(
                f"{candidate.run_dir / ADAPTER_CONFIG}: trained on base model {recorded!r}, but the runs judged "
                f"here load {loaded!r}; judge adapters of one base model together"
            )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except JudgeInputError as error:
        message = str(error)
    except (ConfigError, DataError) as error:  # a run's config or data that the training recipe refuses too
        message = str(error)
    except OSError as error:
        message = f"cannot read or write {error.filename or ''}: {error.strerror or error}"
    print(f"judge: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
