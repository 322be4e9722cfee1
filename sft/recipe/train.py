"""The LoRA SFT recipe, top to bottom: check the config, tokenize (cached), load the model with LoRA,
train with the HF Trainer and our callbacks, save the adapter, the plot and result.json.

`run_training` never leaves a run dir without result.json: completed, pruned or failed, with the
reason. The objective it returns is `runs.smoothing.objective_from_metrics`, the same function
the pruning reports and the ranking use.
"""
from __future__ import annotations

import datetime
import functools
import gc
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from runs.files import LOSS_PLOT_FILE, RESULT_FILE
from runs.loss_plot import plot_llamafactory_loss
from runs.result import (COMPLETED, DATA_FINGERPRINT, DATA_SEED, OBJECTIVE, OBJECTIVE_NAME, PEAK_GPU_MEMORY_MB, PRUNED, SAMPLES_TRAINED,
                         SPLIT_FINGERPRINT, STATUS, TRAIN_SEED, read_result, write_result)
from runs.budget import budget_warnings, check_budget, plan_budget
from runs.schema import check_config, check_lora_rank
from runs.smoothing import default_time_constant, objective_from_metrics
from sft.lifecycle.ending import ending_recorded
from sft.lifecycle.errors import ConfigError, TrainingFailed, TrainingInterrupted
from sft.lifecycle.interruption import StopOnSignal
from sft.lifecycle.stop_signals import stop_signals
from sft.recipe.callbacks import Outcome, Reporter, RichProgressCallback, RunLogCallback, SeenCounter

if TYPE_CHECKING:  # imported where used: it imports torch, which train.py's checks come before
    from sft.recipe.batching import MicroBatches

log = logging.getLogger(__name__)


def run_training(cfg: DictConfig, run_dir: str | Path, reporter: Reporter | None = None) -> dict[str, Any]:
    """Train one run into run_dir and return its result.json content (status completed or pruned).

    A requeued SLURM job whose run dir already says completed or pruned returns that result and trains
    nothing: the stop signal landed after the run had finished, and submitit requeued the job all the
    same. Anywhere else (the same command run again by hand into the same hydra.run.dir) the run trains
    again, replacing the earlier result.

    Raises ConfigError / DataError for bad input, OSError for an I/O error and TrainingFailed for a
    non-finite loss, after writing result.json with status "failed" and the reason; Ctrl-C and SIGTERM
    leave status "interrupted" (sft.lifecycle.ending).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    recorded, _ = read_result(run_dir)
    status = recorded.get(STATUS) if recorded else None
    if status in (COMPLETED, PRUNED) and requeued_slurm_job():
        log.info("the run had already finished before its job was requeued: %s, %s = %s; returning that result, not training again",
                 status, recorded.get(OBJECTIVE_NAME), recorded.get(OBJECTIVE))
        return recorded
    # a requeued job (or the same command after a stop signal) finds "interrupted" in its run dir and
    # resumes from the checkpoint it saved; that earlier ending no longer holds once this session starts
    interrupted = status == "interrupted"
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    with ending_recorded(run_dir, cfg.objective):
        return _train(cfg, run_dir, reporter, resume=True if interrupted else cfg.trainer.resume)


def requeued_slurm_job() -> bool:
    """Whether this process is a SLURM job that SLURM has requeued: SLURM_RESTART_COUNT counts the
    requeues (absent or 0 in a job's first run)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0")) >= 1
    except ValueError:
        return False


@dataclass
class BuiltRun:
    """What the recipe builds before training: the Trainer with its collator and callbacks, and what the
    recipe reads back once training has ended."""

    trainer: Any
    data: Any
    counter: SeenCounter
    outcome: Outcome
    run_log: RunLogCallback
    budget: dict[str, int]
    unit: str
    time_constant: float
    planned: float
    wandb_run: Any
    stopper: StopOnSignal


def build_run(cfg: DictConfig, run_dir: Path, reporter: Reporter | None = None) -> BuiltRun:
    """Check the config, tokenize (cached), load the model with LoRA and build the Trainer exactly as
    `run_training` trains it; bench.throughput times the Trainer this returns."""
    import datasets
    import transformers
    from transformers.trainer_callback import PrinterCallback

    from sft.data.prepare import prepare_datasets
    from sft.data.stream import SampleIdCollator, StreamSampler
    from sft.model.compile import CompileCounts, compile_decoder_layers, resolve_compile
    from sft.model.load import check_vocab, load_model, load_tokenizer, resolve_precision
    from sft.model.lora_dropout import use_padded_layout_dropout
    from sft.recipe.batching import batching_for, micro_batches
    from sft.recipe.trainer import SFTTrainer

    check_config(cfg)
    datasets.disable_progress_bars()
    data_seed, train_seed = int(cfg.task.data_seed), int(cfg.trainer.seed)
    transformers.set_seed(train_seed)  # LoRA init and dropout; the data's order and split follow data_seed
    precision = resolve_precision(cfg.trainer.precision)
    if cfg.model.get("cpu_threads") and not _cuda():
        import torch

        torch.set_num_threads(int(cfg.model.cpu_threads))
    cache_dir = cfg.paths.cache_dir
    tokenizer = load_tokenizer(cfg.model, cache_dir)
    data = prepare_datasets(cfg.task, tokenizer, cache_dir, seed=data_seed, num_proc=os.cpu_count())
    log.info("data: %s", data.counts)
    compiled = resolve_compile(cfg.trainer.compile, _cuda())
    batching = batching_for(cfg.trainer, cfg.model.attn_implementation, tokenizer.pad_token_id, data.train, int(cfg.task.cutoff_len),
                            float(cfg.lora.dropout), _cuda(), compiled)
    model = load_model(cfg.model, cfg.lora, precision, cache_dir, bool(cfg.trainer.gradient_checkpointing), batching.attn_implementation)
    layout_slot = use_padded_layout_dropout(model) if batching.padded_layout_dropout else None
    if compiled:
        compile_decoder_layers(model, cache_dir)
    check_vocab(tokenizer, model)
    check_lora_rank(cfg.lora.rank, model.config.hidden_size, cfg.model.name_or_path)

    budget = plan_budget(cfg.trainer, len(batching.train), batching.samples_per_row)
    check_budget(cfg.trainer, budget)
    for warning in budget_warnings(cfg, budget):
        log.warning("%s", warning)
    stream = StreamSampler(len(batching.train), budget["rows"], data_seed, bool(cfg.trainer.shuffle))
    unit = cfg.smoothing.unit
    planned = budget["samples"] if unit == "samples" else budget["samples"] * mean_length(data.train)
    time_constant = float(cfg.smoothing.time_constant or default_time_constant(planned))
    counter, outcome, stopper = SeenCounter(), Outcome(), StopOnSignal(stop_signals())
    run_log = RunLogCallback(run_dir, counter, outcome, unit, time_constant, len(data.train), reporter, cfg.trainer.report_every)
    step_passes = micro_batches(cfg.trainer, batching, stream.order, int(cfg.task.cutoff_len), _cuda())
    args = training_arguments(cfg, run_dir, precision, budget["steps"], step_passes, has_eval=data.eval is not None)
    wandb_run = start_wandb(cfg, run_dir) if cfg.logger.name == "wandb" else None
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=batching.train,
        eval_dataset=data.eval,
        data_collator=SampleIdCollator(batching.collator),
        processing_class=tokenizer,
        callbacks=[counter, run_log, stopper, RichProgressCallback(f"{cfg.name}"), *([CompileCounts()] if compiled else [])],
        counter=counter,
        stream=stream,
        layout_slot=layout_slot,
    )
    trainer.remove_callback(PrinterCallback)  # our rich bar and run-dir logs replace its printed dicts
    return BuiltRun(trainer, data, counter, outcome, run_log, budget, unit, time_constant, planned, wandb_run, stopper)


def _train(cfg: DictConfig, run_dir: Path, reporter: Reporter | None, resume: Any) -> dict[str, Any]:
    started = time.time()
    freeze_imported_objects()
    built = build_run(cfg, run_dir, reporter)
    outcome, stopper = built.outcome, built.stopper
    stopper.install()  # takes over from train.py's note: a signal since the job started counts
    try:
        checkpoint = find_checkpoint(resume, run_dir)
        if stopper.received is not None:  # a signal before the first step: stop now, with nothing to save
            outcome.end("interrupted", stopper.reason_before_training(checkpoint))
            result = {"status": outcome.status, "reason": outcome.reason, "objective": None, "objective_name": cfg.objective}
            write_result(run_dir, result)
        else:
            # the logs of an earlier session in this run dir: kept up to the checkpoint, none without one
            built.run_log.load_previous(checkpoint_step(checkpoint) if checkpoint else 0)
            if checkpoint:
                built.counter.restore(checkpoint)
                log.info("resuming from %s", checkpoint)
            result = _train_and_record(cfg, run_dir, built, checkpoint, started)
    finally:
        stopper.restore()
    if outcome.status == "interrupted":
        stopper.pass_on()
        raise TrainingInterrupted(outcome.reason)
    if outcome.status == "failed":
        raise TrainingFailed(outcome.reason)
    return result


def _train_and_record(cfg: DictConfig, run_dir: Path, built: BuiltRun, checkpoint: str | None, started: float) -> dict[str, Any]:
    """Train, then save the adapter, the loss plot and result.json, while the stop signals are only noted."""
    from sft.data.stream import SAMPLE_ID_COLUMN, fingerprint

    trainer, data, counter, outcome, run_log, wandb_run = built.trainer, built.data, built.counter, built.outcome, built.run_log, built.wandb_run
    budget, unit, time_constant, planned, stopper = built.budget, built.unit, built.time_constant, built.planned, built.stopper
    data_seed, train_seed = int(cfg.task.data_seed), int(cfg.trainer.seed)
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
        if outcome.status == "completed" and data.eval is not None and (not run_log.records or "eval_loss" not in run_log.records[-1]):
            trainer.evaluate()
    finally:
        if wandb_run is not None:
            wandb_run.finish()
    if stopper.received is not None and trainer.state.global_step < budget["steps"]:
        outcome.end("interrupted", stopper.reason(trainer.state.global_step))
    records = run_log.records
    finished = outcome.status in ("completed", "pruned")
    objective = objective_from_metrics(records, cfg.objective, unit, time_constant) if finished else None
    if outcome.status == "completed" and objective is None:
        outcome.end("failed", f"the run ended without a {cfg.objective}: it logged no {'eval' if cfg.objective == 'eval_loss' else 'training'} "
                    "loss (lower trainer.logging_steps / trainer.eval_steps or raise the budget)")
        finished = False
    if finished:
        trainer.save_model(str(run_dir))
    train_points = [r for r in records if "loss" in r]
    if train_points:
        plot_llamafactory_loss([r["step"] for r in train_points], [r["loss"] for r in train_points], run_dir / LOSS_PLOT_FILE, f"training loss of {run_dir}")
    trained_ids = run_log.trained_ids()
    last = records[-1] if records else {"samples": counter.samples, "tokens": counter.tokens, "step": trainer.state.global_step}
    result = {
        "status": outcome.status,
        "reason": outcome.reason,
        "objective": objective,
        "objective_name": cfg.objective,
        "direction": "minimize",
        "smoothing": {"unit": unit, "time_constant": time_constant},
        "budget": {"steps": budget["steps"], "samples": budget["samples"], "tokens": int(planned) if unit == "tokens" else None},
        "seen": {"samples": counter.samples, "tokens": counter.tokens, "steps": trainer.state.global_step},
        "last_log": last,
        DATA_SEED: data_seed,
        TRAIN_SEED: train_seed,
        SAMPLES_TRAINED: len(trained_ids),
        DATA_FINGERPRINT: fingerprint(trained_ids),
        SPLIT_FINGERPRINT: fingerprint(data.eval[SAMPLE_ID_COLUMN]) if data.eval is not None else None,
        "shuffle": bool(cfg.trainer.shuffle),
        "counts": data.counts,
        "elapsed": run_log.elapsed(),
        # from the recipe's start (config checked, modules imported) to the first optimizer step: the
        # overhead each trial of an in-process sweep pays before it trains
        "start_to_first_step": run_log.first_step_at - started if run_log.first_step_at else None,
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
        PEAK_GPU_MEMORY_MB: peak_gpu_memory_mb(),
    }
    write_result(run_dir, result)
    return result


def peak_gpu_memory_mb() -> float | None:
    """The most GPU memory the run's allocator held (MiB), None on a CPU: how many trials fit one GPU
    (hydra.sweeper.trials_per_gpu)."""
    import torch

    return torch.cuda.max_memory_reserved() / 2**20 if _cuda() else None


@functools.cache
def freeze_imported_objects() -> None:
    """Once per process, collect and then hide from the garbage collector what exists now (the imported
    modules, classes and functions; no trial has built anything yet).

    The Trainer runs a full gc.collect() at the start of every train() (accelerate's free_memory). With
    torch, transformers and datasets imported it walks ~470k objects: 0.65 s of every trial's start at load
    11 on 2 cores, 0.0 s once they are frozen. What trials create is still collected as before.
    """
    gc.collect()
    gc.freeze()


def mean_length(dataset: Any) -> float:
    sample = dataset.select(range(min(len(dataset), 2000)))
    return sum(len(ids) for ids in sample["input_ids"]) / max(1, len(sample))


def training_arguments(cfg: DictConfig, run_dir: Path, precision: str, max_steps: int, step_passes: MicroBatches, has_eval: bool) -> Any:
    """The HF TrainingArguments of the run; `step_passes` says how each optimizer step is cut into forward passes."""
    from transformers import TrainingArguments

    trainer, scheduler, optimizer = cfg.trainer, cfg.scheduler, cfg.optimizer
    warmup = scheduler.warmup_ratio if scheduler.get("warmup_ratio") is not None else scheduler.warmup_steps
    scheduler_kwargs = {"num_cycles": int(scheduler.num_cycles)} if scheduler.name == "cosine_with_restarts" else {}
    eval_steps = trainer.eval_steps or trainer.logging_steps
    return TrainingArguments(
        output_dir=str(run_dir),
        per_device_train_batch_size=step_passes.size,
        per_device_eval_batch_size=int(trainer.eval_batch_size or trainer.per_device_batch_size),
        gradient_accumulation_steps=step_passes.count,
        max_steps=max_steps,
        learning_rate=float(optimizer.lr),
        weight_decay=float(optimizer.weight_decay),
        adam_beta1=float(optimizer.betas[0]),
        adam_beta2=float(optimizer.betas[1]),
        adam_epsilon=float(optimizer.eps),
        max_grad_norm=float(optimizer.max_grad_norm),
        optim=optimizer_name(optimizer.name),
        lr_scheduler_type=scheduler.name,
        lr_scheduler_kwargs=scheduler_kwargs,
        warmup_steps=float(warmup),
        logging_steps=int(trainer.logging_steps),
        logging_nan_inf_filter=False,
        save_strategy="steps",
        save_steps=int(trainer.save_steps),
        save_total_limit=trainer.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=int(eval_steps) if has_eval else None,
        seed=int(trainer.seed),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=precision == "fp32" and not _cuda(),
        dataloader_num_workers=int(trainer.dataloader_num_workers),
        # batches go to a GPU from pinned memory without the host waiting on the copy (the pinning is the Trainer's default)
        accelerator_config={"non_blocking": _cuda()},
        report_to=["wandb"] if cfg.logger.name == "wandb" else [],
        run_name=cfg.logger.get("run_name") or cfg.name,
        disable_tqdm=True,
        remove_unused_columns=False,
        save_only_model=False,
        **liger_arguments(precision),
    )


def optimizer_name(name: str) -> str:
    """The Trainer's optim: torch's AdamW runs fused on CUDA (one kernel for every LoRA weight's update instead
    of a few per weight; the same update), as it is on a CPU otherwise."""
    return "adamw_torch_fused" if name == "adamw_torch" and _cuda() else name


# Liger's fused linear cross-entropy only: the loss from the hidden states without materialising the
# [tokens, vocab] logits (Qwen's 152k vocabulary makes them the largest activation); its other kernels
# (RMSNorm, RoPE, SwiGLU) would change the model's numerics, which stay those of transformers.
LIGER_KERNEL_CONFIG = {"fused_linear_cross_entropy": True, "cross_entropy": False, "rope": False, "rms_norm": False, "swiglu": False}


def liger_arguments(precision: str) -> dict[str, Any]:
    """TrainingArguments that turn on Liger's fused linear cross-entropy on a CUDA GPU when liger-kernel is
    installed (`pip install -e ".[gpu]"`); nothing on a CPU, whose tensors Liger's Triton kernels cannot take."""
    from transformers.utils import is_liger_kernel_available

    if not (_cuda() and is_liger_kernel_available()):
        return {}
    log.info("Liger's fused linear cross-entropy on (liger-kernel installed, CUDA, %s)", precision)
    return {"use_liger_kernel": True, "liger_kernel_config": LIGER_KERNEL_CONFIG}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def find_checkpoint(resume: Any, run_dir: Path) -> str | None:
    """trainer.resume: false; true (this run dir's last good checkpoint, if it has one yet: a new trial of a
    sweep with resume=true starts from step 0); or a run dir / checkpoint path, which must hold a good one.
    A checkpoint whose files do not load (a save cut short) is skipped with a warning (sft.recipe.checkpoints)."""
    from sft.recipe.checkpoints import CHECKPOINT_NAME, checkpoint_problem, last_good_checkpoint

    if resume in (False, None, "false"):
        return None
    target = run_dir if resume in (True, "true") else Path(str(resume))
    if not target.is_dir():
        raise ConfigError(f"trainer.resume={resume}: {target} is not a directory (give a run dir or a checkpoint-N dir)")
    if CHECKPOINT_NAME.match(target.name):
        problem = checkpoint_problem(target)
        if problem:
            raise ConfigError(f"trainer.resume={resume}: {target} cannot be resumed: {problem}; give its run dir to resume "
                              "from the last good checkpoint, or an earlier checkpoint-N")
        return str(target)
    last = last_good_checkpoint(target)
    if last is None and target == run_dir:
        log.info("trainer.resume=%s: no good checkpoint in %s yet, training from step 0", resume, run_dir)
    elif last is None:
        raise ConfigError(
            f"trainer.resume={resume}: no good checkpoint-N dir in {target}; resume needs a run that saved one "
            "(trainer.save_steps) and the same hydra.run.dir"
        )
    return str(last) if last else None


def checkpoint_step(checkpoint: str) -> int:
    return int(Path(checkpoint).name.split("-")[-1])


def start_wandb(cfg: DictConfig, run_dir: Path) -> Any:
    """A W&B run carrying the whole config, offline when no API key is set; the Trainer's W&B
    callback logs into it."""
    import wandb

    mode = cfg.logger.mode
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    os.environ.setdefault("WANDB_LOG_MODEL", "false")
    return wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group,
        job_type=cfg.logger.job_type,
        name=cfg.logger.run_name,
        tags=list(cfg.logger.tags),
        config=OmegaConf.to_container(cfg, resolve=True),
        dir=str(cfg.logger.dir),
        mode=mode,
        notes=str(run_dir),
    )
