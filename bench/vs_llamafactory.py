"""lorasweep's `python train.py` against LLaMA-Factory 0.9.5 on a CPU, side by side in one run: the same tiny
model dir, the same demo_yiliao data, the same settings (LoRA r16 alpha16 dropout 0.01 on all linear layers,
batch 4, accumulation 1, cutoff 256, lr 5e-5 with a linear schedule and no warm-up, fp32, no gradient
checkpointing, seed 42, 60 steps, the samples in file order on both sides, OMP_NUM_THREADS=1), runs
alternating. Prints samples/s, wall time and the
largest difference between the loss curves, for lorasweep padding-free (the default) and padded.

    python -m bench.vs_llamafactory              # 2 rounds; builds LLaMA-Factory's venv first if absent
    python -m bench.vs_llamafactory --rounds 3 --json vs_lf.json

LLaMA-Factory gets its own venv under the cache dir ($LORASWEEP_CACHE or .cache, `llamafactory-0.9.5/`),
built once from the package index: torch 2.9.1, torchvision 0.24.1, torchaudio 2.9.1, llamafactory 0.9.5
(several GB on x86_64, where torch pulls its CUDA libraries). samples/s is 60 x 4 samples over the time from the
start of training to the last log step, as each side's own log records it (LLaMA-Factory's trainer_log.jsonl
elapsed_time, whole seconds; lorasweep's metrics.jsonl elapsed); wall time is the whole process, start-up,
data prep and saving included.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.venvs import cached_venv

ROOT = Path(__file__).resolve().parents[1]
LLAMAFACTORY = ["torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1", "llamafactory==0.9.5"]
STEPS, BATCH, CUTOFF, LR, SEED = 60, 4, 256, 5e-5, 42
OURS = {
    "lorasweep padding-free": [],
    "lorasweep padded": ["trainer.padding_free=false"],
}


def llamafactory_venv(cache_dir: Path) -> Path:
    """LLaMA-Factory 0.9.5's python (its venv is several GB: torch 2.9.1 and its own pins)."""
    return cached_venv(cache_dir / "llamafactory-0.9.5", LLAMAFACTORY)


def llamafactory_config(model_dir: Path, output_dir: Path) -> dict[str, Any]:
    return {
        "model_name_or_path": str(model_dir), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": 16, "lora_alpha": 16, "lora_dropout": 0.01, "lora_target": "all",
        "dataset": "demo_yiliao", "dataset_dir": str(ROOT / "data"), "template": "qwen", "cutoff_len": CUTOFF,
        "overwrite_cache": True, "output_dir": str(output_dir), "logging_steps": 1, "save_strategy": "no",
        "per_device_train_batch_size": BATCH, "gradient_accumulation_steps": 1, "learning_rate": LR,
        "lr_scheduler_type": "linear", "warmup_steps": 0, "max_steps": STEPS, "seed": SEED,
        "disable_gradient_checkpointing": True, "disable_shuffling": True, "report_to": "none", "plot_loss": False,
    }


def ours_overrides(run_dir: Path, cache_dir: Path) -> list[str]:
    return ["model=tiny", "task=demo", f"task.cutoff_len={CUTOFF}", "task.val_size=0", "lora.rank=16", "lora.alpha=16",
            "lora.dropout=0.01", "lora.target=all", f"trainer.per_device_batch_size={BATCH}", "trainer.gradient_accumulation_steps=1",
            f"optimizer.lr={LR}", "scheduler=linear", "scheduler.warmup_steps=0", "trainer.precision=fp32",
            f"trainer.max_steps={STEPS}", "trainer.shuffle=false", "trainer.logging_steps=1", f"trainer.save_steps={10 * STEPS}", f"trainer.seed={SEED}",
            f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache_dir}"]


def run_timed(command: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as handle:
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed ({result.returncode}); its output is in {log}")
    return time.perf_counter() - started


def seconds(clock: str) -> float:
    """LLaMA-Factory's elapsed_time, "H:MM:SS", in seconds."""
    hours, minutes, secs = (float(part) for part in clock.split(":"))
    return 3600 * hours + 60 * minutes + secs


def losses(path: Path, step_key: str) -> dict[int, float]:
    return {line[step_key]: line["loss"] for line in map(json.loads, path.read_text().splitlines()) if line.get("loss") is not None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="each side runs once per round, in turn")
    parser.add_argument("--cache-dir", default=os.environ.get("LORASWEEP_CACHE", str(ROOT / ".cache")))
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    import yaml

    from sft.model.tiny_model import ensure_tiny_model

    cache_dir = Path(args.cache_dir).expanduser().resolve()
    lf_python = llamafactory_venv(cache_dir)
    model_dir = ensure_tiny_model(cache_dir)
    work = Path(tempfile.mkdtemp(prefix="lorasweep-vs-lf-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1",
           "CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "disabled", "PROJECT_ROOT": str(work)}
    figures: dict[str, list[dict[str, Any]]] = {name: [] for name in ["LLaMA-Factory 0.9.5", *OURS]}
    curves: dict[str, dict[int, float]] = {}
    for round_index in range(args.rounds):
        out = work / f"lf-{round_index}"
        config = work / f"lf-{round_index}.yaml"
        config.write_text(yaml.safe_dump(llamafactory_config(model_dir, out)))
        wall = run_timed([str(lf_python), "-m", "llamafactory.cli", "train", str(config)], env, work / f"lf-{round_index}.log")
        last = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()][-1]
        figures["LLaMA-Factory 0.9.5"].append({"wall_s": wall, "samples_per_s": STEPS * BATCH / seconds(last["elapsed_time"])})
        curves["LLaMA-Factory 0.9.5"] = losses(out / "trainer_log.jsonl", "current_steps")
        for name, overrides in OURS.items():
            run_dir = work / f"{name.split()[-1]}-{round_index}"
            wall = run_timed([sys.executable, str(ROOT / "train.py"), *ours_overrides(run_dir, cache_dir), *overrides], env,
                             work / f"{run_dir.name}.log")
            last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
            figures[name].append({"wall_s": wall, "samples_per_s": last["samples"] / last["elapsed"]})
            curves[name] = losses(run_dir / "metrics.jsonl", "step")
    reference = curves["LLaMA-Factory 0.9.5"]
    lf_best = max(f["samples_per_s"] for f in figures["LLaMA-Factory 0.9.5"])
    lf_wall = min(f["wall_s"] for f in figures["LLaMA-Factory 0.9.5"])
    print(f"{args.rounds} round(s), each side in turn; tiny model, demo_yiliao, batch {BATCH}, cutoff {CUTOFF}, {STEPS} steps, "
          f"fp32, OMP_NUM_THREADS=1; best samples/s and shortest wall time of the rounds")
    print(f"{'':24} {'samples/s':>10} {'vs LF':>7} {'wall s':>8} {'vs LF':>7} {'max |loss - LF loss|':>21}")
    report = {}
    for name, runs in figures.items():
        best, wall = max(r["samples_per_s"] for r in runs), min(r["wall_s"] for r in runs)
        steps = sorted(set(curves[name]) & set(reference))
        gap = max(abs(curves[name][s] - reference[s]) for s in steps) if steps else float("nan")
        report[name] = {"runs": runs, "loss_gap": gap, "steps_compared": len(steps)}
        print(f"{name:24} {best:10.2f} {best / lf_best:6.2f}x {wall:8.1f} {wall / lf_wall:6.2f}x {gap:21.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
