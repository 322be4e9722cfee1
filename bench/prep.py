"""Data preparation cost: a yiliao-sized set (436k rows) through the project's own path
(sft.data.prepare.prepare_datasets: LLaMA-Factory's rules, the Qwen2.5 tokenizer rebuilt offline, the on-disk
cache), then the same call again, as every later trial of a sweep makes it: that one must hit the cache.
Beside it, LLaMA-Factory 0.9.5's own preprocessing of the same rows (its `get_dataset`, in its own venv,
bench.vs_llamafactory's, built once under the cache dir) with as many workers, and whether both gave the
same ids for every row. Last, the start overhead of cached in-process trials.

    python -m bench.prep                   # 436k rows, every core this process may use
    python -m bench.prep --rows 50000      # quicker
    python -m bench.prep --skip-llamafactory --json prep.json

The rows are generated: Chinese consultation text cut from the demo generator's sentences to lengths
drawn from the yiliao distribution (question median ~50 characters, answer ~150, lognormal), written as
LLaMA-Factory alpaca JSON lines with a dataset_info.json. The first run includes reading the JSON file
into Arrow; both runs build the config and tokenizer outside the timing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.llamafactory_prep import ids_digest
from bench.throughput import ANSWER_CHARS, QUESTION_CHARS
from bench.vs_llamafactory import llamafactory_venv

ROOT = Path(__file__).resolve().parents[1]
YILIAO_ROWS = 436_000
DATASET_NAME = "yiliao_bench"


def lognormal_chars(rng: random.Random, median: float, sigma: float, limit: int = 8000) -> int:
    return max(1, min(limit, round(math.exp(math.log(median) + sigma * rng.gauss(0.0, 1.0)))))


def write_yiliao_set(data_dir: Path, rows: int, seed: int) -> Path:
    """Alpaca rows whose text is real-looking Chinese (the demo generator's) at yiliao's lengths."""
    from sft.data.demo_data import make_yiliao_alpaca

    rng = random.Random(seed)
    pool = make_yiliao_alpaca(random.Random(seed), 1200)
    questions = "".join(record["instruction"] for record in pool)
    answers = "".join(record["output"] for record in pool)

    def cut(text: str, length: int) -> str:
        start = rng.randrange(len(text))
        return (text * (2 + length // len(text)))[start : start + length]

    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"{DATASET_NAME}.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(rows):
            record = {"instruction": cut(questions, lognormal_chars(rng, *QUESTION_CHARS)), "input": "",
                      "output": cut(answers, lognormal_chars(rng, *ANSWER_CHARS))}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    info = {DATASET_NAME: {"file_name": path.name, "formatting": "alpaca",
                           "columns": {"prompt": "instruction", "query": "input", "response": "output"}}}
    (data_dir / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return path


def yiliao_task(data_dir: Path) -> Any:
    """conf/task/yiliao.yaml (cutoff, template, system) on the generated set, every row kept."""
    from omegaconf import OmegaConf

    task = OmegaConf.load(ROOT / "conf" / "task" / "yiliao.yaml")
    task.dataset = [DATASET_NAME]
    task.dataset_dir = str(data_dir)
    task.max_samples = None
    return task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=YILIAO_ROWS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", help="where the data, caches and tokenizer go (default: a new temporary dir)")
    parser.add_argument("--cache-dir", default=os.environ.get("LORASWEEP_CACHE", str(ROOT / ".cache")),
                        help="where LLaMA-Factory's venv and the Qwen2.5 tokenizer are built once")
    parser.add_argument("--skip-llamafactory", action="store_true", help="time the project's path only")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    cache_dir = Path(args.cache_dir).expanduser().resolve()
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="lorasweep-prep-"))
    # datasets' own Arrow cache of the JSON file goes here too, so the first run starts cold; set before
    # datasets is first imported, which reads it at import
    os.environ["HF_DATASETS_CACHE"] = str(work_dir / "hf_datasets")
    from transformers import AutoTokenizer

    from sft.data.prepare import prepare_datasets
    from sft.model.qwen_vocab import ensure_qwen2_tokenizer

    cores = len(os.sched_getaffinity(0))
    started = time.perf_counter()
    path = write_yiliao_set(work_dir / "data", args.rows, args.seed)
    generated = time.perf_counter() - started
    tokenizer_dir = ensure_qwen2_tokenizer(cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    task = yiliao_task(work_dir / "data")
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        prepared = prepare_datasets(task, tokenizer, work_dir / "cache", seed=42, num_proc=cores)
        timings.append(time.perf_counter() - started)
    rows = len(prepared.train)
    tokens = sum(len(ids) for ids in prepared.train["input_ids"])
    report = {"rows_written": args.rows, "rows_kept": rows, "tokens": tokens, "cores": cores,
              "file_mib": path.stat().st_size / 2**20, "generate_s": generated, "first_run_s": timings[0],
              "rows_per_s": args.rows / timings[0], "cached_run_s": timings[1], "counts": prepared.counts}
    print(f"{args.rows} yiliao-shaped rows ({report['file_mib']:.0f} MiB JSON lines, generated in {generated:.1f} s), "
          f"{cores} cores, cutoff {task.cutoff_len}")
    print(f"first run (read + tokenize + cache): {timings[0]:7.1f} s  {report['rows_per_s']:8.0f} rows/s  "
          f"({rows} rows kept, {tokens / max(1, rows):.0f} tokens per row)")
    print(f"second run (cache hit):              {timings[1]:7.1f} s")
    if not args.skip_llamafactory:
        lf = llamafactory_prep(cache_dir, work_dir, tokenizer_dir, task, cores)
        same = lf["digests"] == [ids_digest(ids) for ids in prepared.train["input_ids"]]
        report.update(llamafactory_s=lf["seconds"], llamafactory_rows=len(lf["digests"]), same_ids=same)
        print(f"LLaMA-Factory 0.9.5 (read + tokenize, {cores} workers): {lf['seconds']:7.1f} s  "
              f"{args.rows / lf['seconds']:8.0f} rows/s  ({len(lf['digests'])} rows); ours takes "
              f"{timings[0] / lf['seconds']:.2f}x its time; same ids for every row: {'yes' if same else 'NO'}")
    report["trial_start_s"] = trial_start_overhead(work_dir)
    print("trial start inside a sweep (recipe start to first optimizer step, tiny model, basic launcher): "
          + ", ".join(f"{seconds:.2f} s" for seconds in report["trial_start_s"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2, default=str)


def llamafactory_prep(cache_dir: Path, work_dir: Path, tokenizer_dir: Path, task: Any, workers: int) -> dict[str, Any]:
    """LLaMA-Factory's get_dataset on the same data dir, template and cutoff, in its venv (bench/llamafactory_prep.py),
    with its own datasets cache so that our run's Arrow copy of the JSON file does not serve it."""
    config = {
        "model_name_or_path": str(tokenizer_dir), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "dataset": DATASET_NAME, "dataset_dir": str(task.dataset_dir), "template": task.template, "cutoff_len": int(task.cutoff_len),
        "overwrite_cache": True, "preprocessing_num_workers": workers, "output_dir": str(work_dir / "lf_output"), "report_to": "none",
    }
    config_path, result_path = work_dir / "lf_prep.json", work_dir / "lf_prep_result.json"
    config_path.write_text(json.dumps(config))
    env = {**os.environ, "HF_DATASETS_CACHE": str(work_dir / "lf_hf_datasets"), "HF_HUB_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    log = work_dir / "lf_prep.log"
    with log.open("w") as handle:
        result = subprocess.run([str(llamafactory_venv(cache_dir)), str(ROOT / "bench" / "llamafactory_prep.py"), str(config_path), str(result_path)],
                                env=env, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"LLaMA-Factory's preprocessing failed ({result.returncode}); its output is in {log}")
    return json.loads(result_path.read_text())


def trial_start_overhead(work_dir: Path, trials: int = 3) -> list[float]:
    """A Hydra grid of `trials` tiny quickstart runs in one process (the basic launcher, as an
    in-process sweep runs them); each result.json says how long its trial took to reach its first
    optimizer step. The first pays the tokenization and tiny-model build; later ones hit the caches."""
    sweep_dir = work_dir / "grid"
    seeds = ",".join(str(seed) for seed in range(trials))
    subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "experiment=quickstart", "trainer.max_steps=2", "trainer.logging_steps=1", "task.val_size=0",
         f"trainer.seed={seeds}", f"hydra.sweep.dir={sweep_dir}"],
        check=True, capture_output=True, env={**os.environ, "PROJECT_ROOT": str(work_dir), "LORASWEEP_CACHE": str(work_dir / "cache")},
    )
    return [json.loads((sweep_dir / str(job) / "result.json").read_text())["start_to_first_step"] for job in range(trials)]


if __name__ == "__main__":
    main()
