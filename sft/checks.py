"""Settings that cannot work, refused before torch or transformers is imported (so in seconds), each
with the key and the fix in the message."""
from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from runs.smoothing import OBJECTIVES
from sft.budget import check_budget, known_budget
from sft.errors import ConfigError

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "constant_with_warmup")
UNITS = ("samples", "tokens")
NUMERIC_KEYS = (
    "optimizer.lr", "optimizer.weight_decay", "optimizer.betas", "optimizer.eps", "optimizer.max_grad_norm",
    "scheduler.warmup_steps", "scheduler.warmup_ratio", "scheduler.num_cycles",
    "trainer.per_device_batch_size", "trainer.gradient_accumulation_steps", "trainer.epochs", "trainer.max_steps",
    "trainer.max_samples_seen", "trainer.logging_steps", "trainer.save_steps", "trainer.seed",
    "lora.rank", "lora.alpha", "lora.dropout", "task.cutoff_len", "task.max_samples", "task.val_size", "smoothing.time_constant",
)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_numbers(cfg: Any) -> None:
    """Every numeric setting is a number: `optimizer.lr=abc` names optimizer.lr, not float()'s error."""
    for key in NUMERIC_KEYS:
        value = OmegaConf.select(cfg, key)
        values = list(value) if OmegaConf.is_list(value) else [value]
        for item in values:
            if item is not None and (isinstance(item, bool) or not isinstance(item, (int, float))):
                try:
                    float(item)
                except (TypeError, ValueError):
                    raise ConfigError(f"{key}={value!r} is not a number; give a number, e.g. {key}=1") from None


def _check_val_size(val_size: Any) -> None:
    """LLaMA-Factory's val_size: a fraction in [0, 1) of the rows, or a whole row count >= 1."""
    value = float(val_size)
    fraction = 0 <= value < 1
    row_count = value >= 1 and value == int(value)
    _require(fraction or row_count, f"task.val_size={val_size} must be a fraction in [0, 1) or a whole row count >= 1")


def check_config(cfg: Any) -> None:
    """Raises ConfigError for the first setting that cannot work (lora, optimizer, scheduler, trainer, task,
    objective and smoothing values)."""
    _check_numbers(cfg)
    optimizer, scheduler, trainer, task = cfg.optimizer, cfg.scheduler, cfg.trainer, cfg.task
    _require(float(optimizer.lr) > 0, f"optimizer.lr={optimizer.lr} must be > 0 (the seed used 5e-5)")
    _require(float(optimizer.weight_decay) >= 0, f"optimizer.weight_decay={optimizer.weight_decay} must be >= 0 (0 or 0.01)")
    _require(all(0 <= float(b) < 1 for b in optimizer.betas) and len(optimizer.betas) == 2,
             f"optimizer.betas={list(optimizer.betas)} must be two numbers in [0, 1), e.g. [0.9, 0.999]")
    _require(float(optimizer.eps) > 0, f"optimizer.eps={optimizer.eps} must be > 0")
    _require(float(optimizer.max_grad_norm) >= 0, f"optimizer.max_grad_norm={optimizer.max_grad_norm} must be >= 0 (0 = no clipping)")
    _require(scheduler.name in SCHEDULERS, f"unknown scheduler {scheduler.name!r}: choose scheduler=" + " | ".join(SCHEDULERS))
    _require(float(scheduler.warmup_steps) >= 0, f"scheduler.warmup_steps={scheduler.warmup_steps} must be >= 0")
    if scheduler.get("warmup_ratio") is not None:
        _require(0 <= float(scheduler.warmup_ratio) < 1, f"scheduler.warmup_ratio={scheduler.warmup_ratio} must be in [0, 1)")
    if scheduler.name == "cosine_with_restarts":
        _require(int(scheduler.num_cycles) >= 1, f"scheduler.num_cycles={scheduler.num_cycles} must be >= 1")
    _require(int(trainer.per_device_batch_size) >= 1, f"trainer.per_device_batch_size={trainer.per_device_batch_size} must be >= 1")
    _require(int(trainer.gradient_accumulation_steps) >= 1,
             f"trainer.gradient_accumulation_steps={trainer.gradient_accumulation_steps} must be >= 1")
    _require(isinstance(trainer.merge_micro_batches, bool) or trainer.merge_micro_batches == "auto",
             f"trainer.merge_micro_batches={trainer.merge_micro_batches} must be auto, true or false")
    _require(float(trainer.epochs) > 0 or int(trainer.max_steps) > 0 or int(trainer.max_samples_seen) > 0,
             "no training budget: set trainer.epochs > 0, trainer.max_steps > 0 or trainer.max_samples_seen > 0")
    _require(int(trainer.logging_steps) >= 1, f"trainer.logging_steps={trainer.logging_steps} must be >= 1")
    _require(int(trainer.save_steps) >= 1, f"trainer.save_steps={trainer.save_steps} must be >= 1")
    cpu_threads = cfg.model.get("cpu_threads")
    _require(cpu_threads is None or (isinstance(cpu_threads, int) and cpu_threads >= 1),
             f"model.cpu_threads={cpu_threads} must be a whole number >= 1, or null for torch's default")
    _require(int(cfg.lora.rank) >= 1, f"lora.rank={cfg.lora.rank} must be a positive integer")
    _require(0 <= float(cfg.lora.dropout) < 1, f"lora.dropout={cfg.lora.dropout} must be in [0, 1)")
    _require(int(task.cutoff_len) >= 1, f"task.cutoff_len={task.cutoff_len} must be a positive number of tokens")
    _require(task.max_samples is None or int(task.max_samples) >= 1, f"task.max_samples={task.max_samples} must be >= 1 or null")
    _check_val_size(task.val_size)
    _require(isinstance(task.get("data_seed"), int), f"task.data_seed={task.get('data_seed')} must be an integer (it fixes the split and the sample order; 0 is the default)")
    _require(trainer.get("eval_batch_size") is None or int(trainer.eval_batch_size) >= 1,
             f"trainer.eval_batch_size={trainer.get('eval_batch_size')} must be >= 1 or null (= per_device_batch_size)")
    _require(cfg.objective in OBJECTIVES, f"unknown objective {cfg.objective!r}: choose " + " | ".join(OBJECTIVES))
    _require(cfg.objective != "eval_loss" or float(task.val_size) > 0,
             "objective=eval_loss needs an eval split: set task.val_size (a fraction < 1 or a row count)")
    _require(cfg.smoothing.unit in UNITS, f"smoothing.unit={cfg.smoothing.unit!r}: choose samples or tokens")
    if cfg.smoothing.time_constant is not None:
        _require(float(cfg.smoothing.time_constant) > 0, f"smoothing.time_constant={cfg.smoothing.time_constant} must be > 0 or null")
    budget = known_budget(trainer)
    if budget is not None:
        check_budget(cfg, budget)
