"""Synthetic run dirs written exactly as docs/run_dir.md describes them.

For the benchmark (bench/rank_bench.py) and the tests, and for trying the analysis before any training
has run: the loss is a noisy exponential descent, so rankings and diagnoses have something to find.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import yaml

from runs.files import METRICS_FILE
from runs.jsonl import write_jsonl
from runs.result import write_result


def synthetic_losses(points: int, rate: float, noise: float, seed: int, floor: float = 0.5) -> list[float]:
    """floor + 2 * exp(-rate * i) + gaussian noise, for i = 1..points."""
    generator = random.Random(seed)
    return [floor + 2.0 * math.exp(-rate * i) + generator.gauss(0.0, noise) for i in range(1, points + 1)]


def write_run_dir(
    run_dir: Path,
    losses: list[float],
    batch_size: int,
    overrides: dict[str, object],
    status: str = "completed",
    tokens_per_sample: int = 50,
    eval_loss: float | None = None,
    result_fields: dict[str, object] | None = None,
) -> Path:
    """A run dir with .hydra/{config,overrides}.yaml, metrics.jsonl (one line per optimizer step) and
    result.json (plus `result_fields`, such as the data stream's data_fingerprint and samples_trained)."""
    hydra = run_dir / ".hydra"
    hydra.mkdir(parents=True, exist_ok=True)
    config: dict = {"trainer": {"per_device_batch_size": batch_size, "seed": 42}}
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    (hydra / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (hydra / "overrides.yaml").write_text(yaml.safe_dump([f"{k}={v}" for k, v in overrides.items()]), encoding="utf-8")
    lines = []
    for step, loss in enumerate(losses, start=1):
        samples = step * batch_size
        lines.append({
            "step": step, "samples": samples, "tokens": samples * tokens_per_sample, "loss": loss, "lr": 1e-3,
            "grad_norm": 1.0, "epoch": step / len(losses), "elapsed": step * 0.1,
            "samples_per_s": batch_size * 10.0, "tokens_per_s": batch_size * tokens_per_sample * 10.0,
        })
    if eval_loss is not None:
        steps = len(losses)
        lines.append({"step": steps, "samples": steps * batch_size, "tokens": steps * batch_size * tokens_per_sample,
                      "eval_loss": eval_loss, "epoch": 1.0, "elapsed": steps * 0.1})
    write_jsonl(run_dir / METRICS_FILE, lines)
    seen = {"samples": len(losses) * batch_size, "tokens": len(losses) * batch_size * tokens_per_sample, "steps": len(losses)}
    result = {"status": status, "reason": None, "objective": None, "objective_name": "smoothed_loss",
              "direction": "minimize", "seen": seen, **(result_fields or {})}
    write_result(run_dir, result)
    return run_dir
