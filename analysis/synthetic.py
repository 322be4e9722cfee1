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


BASE_SETTINGS = {"optimizer.lr": 2e-3, "optimizer.max_grad_norm": 1.0, "scheduler.warmup_steps": 5, "trainer.shuffle": False}
NOTES_REMEDIES = {  # the one-change-at-a-time trials of `sweep=notes_quickstart`, on the settings above
    "baseline": {},
    "lower_lr": {"optimizer.lr": 1e-3},
    "more_warmup": {"scheduler.warmup_steps": 50},
    "clip_harder": {"optimizer.max_grad_norm": 0.5},
    "shuffle": {"trainer.shuffle": True},
}
SAMPLED = {"optimizer.lr": 3.5e-3, "scheduler.warmup_steps": 10, "trainer.shuffle": True}  # the sampler's one trial


def write_notes_sweep(sweep_dir: Path, gains: dict[str, float], repeats: int = 2, noise: float = 0.02) -> Path:
    """A sweep shaped like `sweep=notes_quickstart` with `hydra.sweeper.repeats`, as the sweeper leaves it:
    one run dir per trial and seed (trial-N-seedS) and the study's trials.csv with the user attrs
    "ablation", "run_dirs" and "overrides". The baseline and each remedy of NOTES_REMEDIES, then one
    sampled trial (SAMPLED). `gains[name]` lowers that trial's loss floor (and eval loss) by so much
    (a negative gain raises it); each seed adds its own noise, the same for every trial, as one
    `trainer.seed` gives every trial the same LoRA init and dropout. `shuffle=true` trains on another data stream (data_fingerprint), so
    the shuffle remedy and the sampled trial form a group of their own; all share the held-out rows."""
    import optuna

    trials = [*NOTES_REMEDIES.items(), ("sampled", SAMPLED)]
    study = optuna.create_study()
    for number, (name, change) in enumerate(trials):
        settings = {**BASE_SETTINGS, **change}
        run_dirs = []
        for repeat in range(repeats):
            seed = 42 + repeat
            floor = 0.5 - gains.get(name, 0.0)
            stream = "shuffled" if settings["trainer.shuffle"] else "file-order"
            run_dir = write_run_dir(
                sweep_dir / f"trial-{number}-seed{seed}",
                synthetic_losses(60, 0.05, noise, seed=seed, floor=floor), batch_size=4,
                overrides={**settings, "trainer.seed": seed},
                eval_loss=floor + 0.3 + random.Random(seed).gauss(0.0, noise / 4),
                result_fields={"data_fingerprint": stream, "samples_trained": 240, "split_fingerprint": "held-out",
                               "data_seed": 0},
            )
            run_dirs.append(str(run_dir))
        attrs = {"run_dirs": run_dirs, "overrides": [f"{key}={value}" for key, value in change.items()]}
        if name != "sampled":
            attrs["ablation"] = name
        study.add_trial(optuna.trial.create_trial(value=0.0, user_attrs=attrs))
    study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs")).to_csv(sweep_dir / "trials.csv",
                                                                                              index=False)
    return sweep_dir
