"""Training throughput of the trainer that `train.py` builds (sft.recipe.train.build_run: the same SFTTrainer,
collator, callbacks, run-dir logging and progress bar), per batching mode: padded (LLaMA-Factory's
batches), padding-free (the default; on a GPU with the micro-batches apart, merged, and merged with the
decoder layers compiled) and packed. Samples/s, real (non-pad) tokens/s, MFU, peak memory and the time
the full 436k-row yiliao set would take, one table, each row printed as its mode ends.

    python -m bench.throughput                    # CPU: the tiny model on demo_yiliao, a few minutes on 2 cores
    python -m bench.throughput --json out.json    # the same, plus the figures as JSON
    python -m bench.throughput --dry-run          # the GPU mode's model (Qwen2.5-0.5B shape, 1 layer), 2 steps per mode, on CPU
    bash bench/gpu_check.sh                       # GPU mode on a CUDA machine: Qwen2.5-0.5B architecture, bf16, MFU

Each mode is a fresh `build_run` of its config, trained for warm-up plus timed optimizer steps; the time
runs from the end of the last warm-up step to the end of the last step, so it holds everything a step of
a real run pays (data loading, collating, logging, callbacks, the progress bar). The modes take turns,
`--repeats` times, and each keeps its best pass: a load that changes on a shared machine weighs on all.

CPU mode: the tiny model on the demo yiliao consultations, LoRA r16 alpha16 dropout 0.01 on all linear
layers, batch 4, cutoff 256, fp32. GPU mode: the Qwen2.5-0.5B architecture with random weights (built
once under the cache dir; no download), the seed yiliao settings (cutoff 2048, batch 20 x accumulation
5, bf16) on a yiliao-shaped generated set (bench.prep's), the padded path with LLaMA-Factory's
gradient checkpointing; MFU = 4 x (matmul parameters) x real tokens/s / measured matmul peak (forward
plus activation gradients; the frozen base weights get no weight gradients, so 4 and not 6). Every mode
but the compiled one sets trainer.compile=false (auto compiles on a GPU).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from runs.project import register_project_dir
from sft.model.compile import COMPILE_CACHE

ROOT = Path(__file__).resolve().parents[1]
# Measured with the Qwen2.5 tokenizer built offline (sft.model.qwen_vocab) on data/demo_yiliao.json; bench.prep
# draws its generated rows from these lengths.
QUESTION_CHARS = (50.0, 0.7)  # lognormal (median, sigma) of a question's characters
ANSWER_CHARS = (150.0, 1.0)  # ... of an answer's
LORA = ["lora.rank=16", "lora.alpha=16", "lora.dropout=0.01", "lora.target=all"]


@dataclass
class Settings:
    """One benchmark setup: the overrides every mode shares, and how many steps to warm up and time."""

    name: str
    overrides: list[str]
    warmup_steps: int
    timed_steps: int
    repeats: int
    gpu: bool  # the GPU setup: a Qwen2.5-0.5B-shaped model dir and a generated yiliao-shaped set
    layers: int = 24  # of the Qwen2.5-0.5B-shaped model
    modes: dict[str, list[str]] = field(default_factory=dict)


def cpu_settings() -> Settings:
    overrides = ["model=tiny", "task=demo", "task.dataset=[demo_yiliao]", "task.cutoff_len=256", "task.max_samples=null",
                 "task.val_size=0", "trainer.per_device_batch_size=4", "trainer.gradient_accumulation_steps=1",
                 "trainer.precision=fp32", "optimizer.lr=5e-5", *LORA]
    modes = {"padded": ["trainer.padding_free=false"], "padding-free": [], "packed": ["trainer.packing=true"]}
    modes = {name: [*overrides, "trainer.compile=false"] for name, overrides in modes.items()}
    return Settings("cpu-tiny", overrides, warmup_steps=3, timed_steps=30, repeats=2, gpu=False, modes=modes)


def gpu_settings() -> Settings:
    """The seed's yiliao settings: cutoff 2048, per-device batch 20, gradient accumulation 5, bf16."""
    overrides = ["task.cutoff_len=2048", "task.max_samples=null", "task.val_size=0", "trainer.per_device_batch_size=20",
                 "trainer.gradient_accumulation_steps=5", "trainer.precision=bf16", "optimizer.lr=5e-5", *LORA]
    modes = {"padded + checkpointing (LLaMA-Factory defaults)": ["trainer.padding_free=false", "trainer.gradient_checkpointing=true",
                                                                 "trainer.compile=false"],
             "padding-free, micro-batches apart": ["trainer.merge_micro_batches=false", "trainer.compile=false"],
             "padding-free merged": ["trainer.merge_micro_batches=true", "trainer.compile=false"],
             "padding-free merged + compile": ["trainer.merge_micro_batches=true", "trainer.compile=true"],
             "packed": ["trainer.packing=true", "trainer.compile=false"]}
    return Settings("gpu-qwen2.5-0.5b", overrides, warmup_steps=2, timed_steps=4, repeats=1, gpu=True, modes=modes)


def dry_run_settings() -> Settings:
    """The GPU mode's model and code path with one layer, a small batch and fp32, two steps per mode, on CPU;
    padding-free merges its micro-batches as on a GPU (trainer.merge_micro_batches=auto does not on a CPU).
    The compiled mode's padding-free attention on a CPU is sdpa's dense mask, with which micro-batches do
    not merge (the table's fwd/step says so); on a GPU it is flex_attention, as in the other modes."""
    settings = gpu_settings()
    settings.name, settings.layers, settings.warmup_steps, settings.timed_steps = "dry-run", 1, 1, 1
    settings.overrides = [o for o in settings.overrides if not o.startswith(("trainer.per_device", "trainer.gradient_acc", "trainer.precision"))]
    settings.overrides += ["trainer.per_device_batch_size=2", "trainer.gradient_accumulation_steps=2", "trainer.precision=fp32"]
    settings.modes = {name: overrides if any(o.startswith("trainer.merge_micro_batches") for o in overrides)
                      else [*overrides, "trainer.merge_micro_batches=true"] for name, overrides in settings.modes.items()}
    return settings


def qwen25_05b_dir(cache_dir: Path, layers: int) -> Path:
    """A model dir of the Qwen2.5-0.5B architecture with random weights (seed 0) and the tiny model's
    tokenizer (its ids all fall inside Qwen's 151936-row embedding), built once under the cache dir."""
    from sft.data.build_once import build_once
    from sft.model.tiny_model import TINY_MODEL_NAME, ensure_tiny_model

    def build(directory: Path) -> None:
        import torch
        from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model(cache_dir))
        config = Qwen2Config(hidden_size=896, num_hidden_layers=layers, num_attention_heads=14, num_key_value_heads=2,
                             intermediate_size=4864, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                             rms_norm_eps=1e-6, tie_word_embeddings=True, use_cache=False,
                             bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    return build_once(cache_dir / "models" / f"bench-qwen2.5-0.5b-{layers}layers-{TINY_MODEL_NAME}", build)


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_project_dir()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


class StepClock(TrainerCallback):
    """The wall time and the samples and tokens counted from the end of the warm-up's
    last step to the end of the run's last step (on CUDA synchronised there, and only there)."""

    def __init__(self, warmup_steps: int, counter: Any) -> None:
        self.warmup_steps, self.counter = warmup_steps, counter
        self.start: tuple[float, int, int] | None = None
        self.end: tuple[float, int, int] | None = None

    def _mark(self) -> tuple[float, int, int]:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter(), self.counter.samples, self.counter.tokens

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup_steps:
            self.start = self._mark()
        elif state.global_step == state.max_steps:
            self.end = self._mark()


class StepProfiler(TrainerCallback):
    """torch.profiler over the timed steps (from the end of the warm-up to the end of the run): where a step's
    time goes, printed as the ops with the most self time. The timed figures of a profiled pass are inflated."""

    def __init__(self, warmup_steps: int, title: str) -> None:
        self.warmup_steps, self.title = warmup_steps, title
        self.profiler: Any = None

    def on_step_end(self, args, state, control, **kwargs):
        import torch
        from torch.profiler import ProfilerActivity, profile

        if state.global_step == self.warmup_steps:
            cuda = torch.cuda.is_available()
            self.profiler = profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])])
            self.profiler.__enter__()
        elif state.global_step == state.max_steps and self.profiler is not None:
            self.profiler.__exit__(None, None, None)
            averages = self.profiler.key_averages()
            for sort_by in ("self_cpu_time_total", *(["self_device_time_total"] if torch.cuda.is_available() else [])):
                print(f"profile of {self.title}, by {sort_by}:\n{averages.table(sort_by=sort_by, row_limit=18, max_name_column_width=60)}", flush=True)


def time_mode(settings: Settings, overrides: list[str], work_dir: Path, profile: bool = False, title: str = "") -> dict[str, Any]:
    """One pass of one mode through the recipe's own Trainer; its figures."""
    import torch

    from sft.model.compile import CompileCounts
    from sft.recipe.train import build_run

    steps = settings.warmup_steps + settings.timed_steps
    cfg = compose([*settings.overrides, *overrides, f"trainer.max_steps={steps}", f"trainer.save_steps={10 * steps}",
                   f"trainer.logging_steps={min(10, steps)}",  # short GPU passes still log a loss
                   f"paths.cache_dir={work_dir / 'cache'}", f"paths.root_dir={work_dir}"])
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work_dir))
    built = build_run(cfg, run_dir)
    clock = StepClock(settings.warmup_steps, built.counter)
    built.trainer.add_callback(clock)
    if profile:
        built.trainer.add_callback(StepProfiler(settings.warmup_steps, title))
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        built.trainer.train()
    finally:
        built.stopper.restore()
    (start, samples_before, tokens_before), (end, samples_after, tokens_after) = clock.start, clock.end
    seconds = end - start
    model = built.trainer.model
    losses = [record["loss"] for record in built.run_log.records if "loss" in record]
    return {
        "attention": model.config._attn_implementation,
        "recompiles": next((c.recompiles for c in built.trainer.callback_handler.callbacks if isinstance(c, CompileCounts)), None),
        "gradient_checkpointing": bool(cfg.trainer.gradient_checkpointing),
        "liger": bool(built.trainer.args.use_liger_kernel),
        "forwards_per_step": built.trainer.args.gradient_accumulation_steps,
        "seconds": seconds,
        "samples": samples_after - samples_before,
        "real_tokens": tokens_after - tokens_before,
        "samples_per_s": (samples_after - samples_before) / seconds,
        "real_tokens_per_s": (tokens_after - tokens_before) / seconds,
        "last_loss": losses[-1] if losses else math.nan,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "matmul_parameters": sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)),
    }


def matmul_peak_flops(device: str, dtype: Any) -> float:
    """Best of a few square matmuls in the training dtype: the peak that MFU is measured against."""
    import torch

    size = 8192 if device == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = math.inf
    for _ in range(5 if device == "cuda" else 3):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * size**3 / best


def run(settings: Settings, work_dir: Path, cache_dir: Path, profile: bool = False) -> dict[str, Any]:
    """Every mode, `repeats` times in turn; each mode keeps its fastest pass."""
    import torch

    (work_dir / "cache").mkdir(parents=True, exist_ok=True)
    for name in ("models", "tokenizers", COMPILE_CACHE):  # the built models and compiled kernels are shared; tokenized data is the run's own
        link = work_dir / "cache" / name
        (cache_dir / name).mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to((cache_dir / name).resolve())
    shared = list(settings.overrides)
    if settings.gpu:
        from bench.prep import DATASET_NAME, write_yiliao_set

        model_dir = qwen25_05b_dir(cache_dir, settings.layers)
        steps = settings.warmup_steps + settings.timed_steps
        rows = 2 * steps * 20 * 5  # two steps' worth of rows per step at batch 20 x 5, packing included
        write_yiliao_set(work_dir / "data", rows, seed=0)
        shared += [f"model.name_or_path={model_dir}", f"task.dataset=[{DATASET_NAME}]", f"task.dataset_dir={work_dir / 'data'}"]
    settings = Settings(**{**asdict(settings), "overrides": shared})
    device = "cuda" if torch.cuda.is_available() and not settings.name == "dry-run" else "cpu"
    peak = matmul_peak_flops(device, torch.bfloat16 if device == "cuda" else torch.float32)
    device_name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    report: dict[str, Any] = {"settings": asdict(settings), "device_name": device_name, "torch": torch.__version__,
                              "matmul_peak_tflops": peak / 1e12, "modes": []}
    print(table_header(report), flush=True)
    best: dict[str, dict[str, Any]] = {}
    for _ in range(settings.repeats):
        for name, overrides in settings.modes.items():
            result = time_mode(settings, overrides, work_dir, profile, name)
            padded = next((best[mode] for mode in best if mode.startswith("padded")), result if name.startswith("padded") else None)
            result = {"name": name, **result, "vs_padded": result["samples_per_s"] / padded["samples_per_s"] if padded else math.nan,
                      "mfu": 4 * result["matmul_parameters"] * result["real_tokens_per_s"] / peak}
            print(table_row(result, report), flush=True)  # a pass's figures survive a later timeout
            if name not in best or result["samples_per_s"] > best[name]["samples_per_s"]:
                best[name] = result
    report["modes"] = list(best.values())
    return report


HEADLINE_ROWS = 436_000  # the full yiliao set
COLUMNS = (f"{'mode':48} {'attention':15} {'ckpt':4} {'liger':5} {'fwd/step':>8} {'samples/s':>10} {'real tok/s':>11} {'vs padded':>9} "
           f"{'MFU':>6} {'peak GiB':>8} {'436k rows x 1 epoch':>19} {'last loss':>9} {'recompiles':>10}")


def table_header(report: dict[str, Any]) -> str:
    settings = report["settings"]
    return "\n".join([
        f"{settings['name']} on {report['device_name']} (torch {report['torch']}), matmul peak "
        f"{report['matmul_peak_tflops']:.2f} TFLOP/s; train.py's trainer, {settings['timed_steps']} optimizer steps timed "
        f"after {settings['warmup_steps']} warm-up, best of {settings['repeats']} pass(es), modes taking turns; each row printed as it ends",
        COLUMNS,
    ])


def table_row(result: dict[str, Any], report: dict[str, Any]) -> str:
    on_gpu = not report["device_name"].startswith("CPU")
    mfu = f"{100 * result['mfu']:5.1f}%" if on_gpu else "     -"
    memory = f"{result['peak_memory_gib']:8.1f}" if result["peak_memory_gib"] is not None else "       -"
    loss = f"{result['last_loss']:9.4f}" if math.isfinite(result["last_loss"]) else "        -"
    vs_padded = f"{result['vs_padded']:8.2f}x" if math.isfinite(result["vs_padded"]) else "        -"
    epoch = f"{HEADLINE_ROWS / result['samples_per_s'] / 60:15.0f} min"
    recompiles = f"{result['recompiles']:10d}" if result["recompiles"] is not None else "         -"
    return (f"{result['name']:48} {result['attention']:15} {'on' if result['gradient_checkpointing'] else 'off':4} "
            f"{'on' if result['liger'] else 'off':5} {result['forwards_per_step']:8d} {result['samples_per_s']:10.2f} "
            f"{result['real_tokens_per_s']:11.0f} {vs_padded} {mfu} {memory} {epoch} {loss} {recompiles}")


def format_table(report: dict[str, Any]) -> str:
    lines = [table_header(report), *(table_row(result, report) for result in report["modes"])]
    lines.append("MFU (GPU only; a CPU's measured matmul peak says little) counts 4 x the weights of every nn.Linear (LoRA's and "
                 "lm_head included) x real tokens: the forward and the activation gradients; LoRA computes no weight gradient "
                 "for the frozen weights, so not 6; attention's own FLOPs are not counted. fwd/step: forward passes an optimizer "
                 "step takes (trainer.merge_micro_batches); recompiles: graphs compiled after the first step (trainer.compile); 436k rows x 1 epoch: the full yiliao set at this mode's samples/s; "
                 "last loss: the last logged training loss")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cuda"), default="auto", help="auto: cuda when available, else the CPU benchmark")
    parser.add_argument("--dry-run", action="store_true", help="the GPU mode's model with 1 layer, 2 steps per mode, on CPU")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps timed per mode (default: per device)")
    parser.add_argument("--repeats", type=int, default=None, help="passes over the modes (default: per device)")
    parser.add_argument("--cache-dir", default=os.environ.get("LORASWEEP_CACHE", str(ROOT / ".cache")),
                        help="where the built models and compiled kernels are kept (default: $LORASWEEP_CACHE or .cache)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--modes", help="a comma-separated subset of the modes, e.g. padding-free,packed (default: all)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of each mode's timed steps")
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible here; run without --device for the CPU benchmark")
    settings = dry_run_settings() if args.dry_run else gpu_settings() if torch.cuda.is_available() else cpu_settings()
    settings.timed_steps = args.steps or settings.timed_steps
    settings.repeats = args.repeats or settings.repeats
    if args.modes:
        wanted = args.modes.split(",")
        unknown = [name for name in wanted if not any(mode.startswith(name) for mode in settings.modes)]
        if unknown:
            sys.exit(f"--modes: no mode {', '.join(unknown)}; the modes here are {', '.join(settings.modes)}")
        # a name that is a mode's whole name picks that mode alone ("padding-free merged", not also "... + compile")
        settings.modes = {mode: o for mode, o in settings.modes.items()
                          if any(mode == name or (name not in settings.modes and mode.startswith(name)) for name in wanted)}
    with tempfile.TemporaryDirectory(prefix="lorasweep-throughput-") as work_dir:
        report = run(settings, Path(work_dir), Path(args.cache_dir).expanduser(), args.profile)
    print("\n" + format_table(report), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
