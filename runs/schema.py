"""The training config's schema: the reference of every key's type and valid range.

One dataclass per config group (paths, model, task, optimizer, scheduler, lora, trainer, logger) and one
for the root (objective, smoothing, and the groups), registered in Hydra's ConfigStore as
`<name>_schema` (at the top, not as a group: `--help` lists the groups one chooses from). Each yaml file of a group extends its group's schema in its defaults list (Hydra's
"structured config as schema" pattern), so the yaml files stay the defaults users read, while Hydra
refuses, as it composes, a value of the wrong type (`trainer.per_device_batch_size=2.5`) and a key
that no schema has. What a type cannot say is said beside it: a field made with `setting()` carries
its valid range or choices, and the rules that tie several keys together follow the dataclasses.
`check_config` applies both; `explain` turns Hydra's and OmegaConf's refusals of a key into the same one
line (the key, the value, what the key takes).

Imports neither torch nor sft nor the sweeper: a run checks its config before the heavy imports, and a
sweep checks every choice and bound of its search space against the same rules before any trial.
A new key is a new field of its group's dataclass (with its range, when it has one) and a line in the
group's yaml files.
"""
from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, List, Optional, Union

from hydra.core.config_store import ConfigStore
from hydra.errors import MissingConfigException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runs.budget import check_budget, known_budget
from runs.errors import ConfigError
from runs.exits import one_line
from runs.smoothing import OBJECTIVES

USUAL_LR = (1e-7, 0.1)  # learning rates outside this are refused unless optimizer.allow_any_lr=true
SEED_LIMIT = 2**32  # numpy's and torch's seeds are 32-bit unsigned


@dataclass(frozen=True)
class Range:
    """A key's valid values beyond its type: bounds, a fixed set of choices, and what null means."""

    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    below: float | None = None
    choices: tuple[Any, ...] | None = None
    null: str | None = None  # what null means, for an Optional key

    def allows(self, value: Any) -> bool:
        if value is None:
            return True
        if self.choices is not None:
            return value in self.choices
        return all((
            self.at_least is None or value >= self.at_least,
            self.above is None or value > self.above,
            self.at_most is None or value <= self.at_most,
            self.below is None or value < self.below,
        ))

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + " | ".join(choice if isinstance(choice, str) else _shown(choice) for choice in self.choices)
        low = f">= {_shown(self.at_least)}" if self.at_least is not None else f"> {_shown(self.above)}" if self.above is not None else ""
        high = f"<= {_shown(self.at_most)}" if self.at_most is not None else f"< {_shown(self.below)}" if self.below is not None else ""
        return " and ".join(part for part in (low, high) if part)


def setting(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, **valid: Any) -> Any:
    """A field with its valid range (`at_least=1`, `below=1`, `choices=(...)`, `null="what null means"`)."""
    metadata = {"range": Range(**valid)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class PathsConfig:
    """Where things go (conf/paths); relative paths are relative to the directory train.py starts in."""

    root_dir: str = MISSING
    data_dir: str = MISSING
    output_dir: str = MISSING
    multirun_dir: str = MISSING
    cache_dir: str = MISSING


@dataclass
class ModelConfig:
    """The base model (conf/model)."""

    name_or_path: str = MISSING  # hub id, ModelScope id, local dir, or builtin:tiny-qwen2
    short_name: str = MISSING
    tokenizer: Optional[str] = setting(None, null="the model's own")
    dtype: str = setting("auto", choices=("auto", "bfloat16", "float16", "float32"))
    attn_implementation: str = setting("auto", choices=("auto", "sdpa", "eager", "flash_attention_2", "flex_attention"))
    trust_remote_code: bool = False
    revision: Optional[str] = None
    cpu_threads: Optional[int] = setting(None, at_least=1, null="torch's default")


@dataclass
class TaskConfig:
    """The data and how it is encoded (conf/task), with LLaMA-Factory's names and meanings."""

    name: str = MISSING
    dataset: Any = MISSING  # a list of names in dataset_info.json, or a comma-separated string
    dataset_dir: str = MISSING
    formatting: Optional[str] = setting(None, choices=("alpaca", "sharegpt"), null="the dataset_info.json entry's")
    template: str = "qwen"
    system: Optional[str] = None
    cutoff_len: int = setting(2048, at_least=1)
    max_samples: Optional[int] = setting(None, at_least=1, null="every row")
    val_size: float = 0.0  # a fraction in [0, 1) or a whole row count >= 1 (rules below)
    data_seed: int = setting(0, at_least=0, below=SEED_LIMIT)
    encoding: Optional[str] = None
    keep_rows_without_labels: bool = False
    metric: Optional[str] = setting(None, choices=("label", "triples", "text"), null="no held-out metric")


@dataclass
class OptimizerConfig:
    """AdamW (conf/optimizer). An lr outside USUAL_LR is refused unless allow_any_lr is true."""

    name: str = "adamw_torch"
    lr: float = setting(5e-5, above=0)
    allow_any_lr: bool = False
    weight_decay: float = setting(0.0, at_least=0)
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # two numbers in [0, 1) (rules below)
    eps: float = setting(1e-8, above=0)
    max_grad_norm: float = setting(1.0, at_least=0)


@dataclass
class SchedulerConfig:
    """The learning-rate schedule (conf/scheduler): one of HF Trainer's, after linear warmup."""

    name: str = setting(MISSING, choices=("linear", "cosine", "cosine_with_restarts", "constant_with_warmup"))
    warmup_steps: int = setting(0, at_least=0)
    warmup_ratio: Optional[float] = setting(None, at_least=0, below=1, null="warmup_steps")


@dataclass
class CosineWithRestartsConfig(SchedulerConfig):
    """scheduler=cosine_with_restarts: the one schedule with a setting of its own."""

    num_cycles: int = setting(2, at_least=1)


@dataclass
class LoraConfig:
    """LoRA through PEFT (conf/lora), with LLaMA-Factory's names and meanings."""

    rank: int = setting(8, at_least=1)  # and at most the model's hidden size (check_lora_rank)
    alpha: int = setting(16, at_least=1)
    dropout: float = setting(0.0, at_least=0, below=1)
    target: Any = "all"  # all = every nn.Linear but lm_head, or a list of module names
    use_rslora: bool = False
    use_dora: bool = False
    dtype: str = setting("fp32", choices=("fp32", "compute"))  # the adapters' weights: fp32, or the model's dtype


@dataclass
class TrainerConfig:
    """HF Trainer settings (conf/trainer). Budgets: max_samples_seen > 0 wins, then max_steps > 0, then epochs."""

    per_device_batch_size: int = setting(4, at_least=1)
    gradient_accumulation_steps: int = setting(1, at_least=1)
    epochs: float = setting(3.0, at_least=0)
    max_steps: int = setting(-1, at_least=-1)  # -1 or 0: no step budget
    max_samples_seen: int = setting(0, at_least=0)  # 0: no budget in samples
    logging_steps: int = setting(10, at_least=1)
    save_steps: int = setting(500, at_least=1)
    save_total_limit: Optional[int] = setting(None, at_least=1, null="keep every checkpoint")
    eval_steps: Optional[int] = setting(None, at_least=1, null="trainer.logging_steps")
    eval_batch_size: Optional[int] = setting(None, at_least=1, null="trainer.per_device_batch_size")
    shuffle: bool = True
    seed: int = setting(42, at_least=0, below=SEED_LIMIT)
    precision: str = setting("auto", choices=("auto", "bf16", "fp16", "fp32"))
    gradient_checkpointing: bool = False
    padding_free: bool = True
    packing: bool = False
    # OmegaConf 2.3 cannot fill a Union field from a dataclass default: these two are Any, checked by their range / rule
    merge_micro_batches: Any = setting("auto", choices=("auto", True, False))
    compile: Any = setting("auto", choices=("auto", True, False))  # regional torch.compile; auto: on a GPU
    resume: Any = False  # true = this run dir's last checkpoint, or a path to a run dir / checkpoint (rules below)
    dataloader_num_workers: int = setting(0, at_least=0)
    report_every: int = setting(1, at_least=1)


@dataclass
class LoggerConfig:
    """The experiment tracker (conf/logger): none writes the run dir's logs only."""

    name: str = setting(MISSING, choices=("none", "wandb"))


@dataclass
class WandbLoggerConfig(LoggerConfig):
    """logger=wandb: Weights & Biases, offline when WANDB_API_KEY is unset."""

    project: str = "lorasweep"
    entity: Optional[str] = None
    group: Optional[str] = None
    job_type: str = MISSING
    run_name: str = MISSING
    tags: List[str] = field(default_factory=list)
    mode: str = setting("auto", choices=("auto", "online", "offline", "disabled"))
    dir: str = MISSING


@dataclass
class SmoothingConfig:
    """How the objective smooths the loss (runs.smoothing)."""

    unit: str = setting("samples", choices=("samples", "tokens"))
    time_constant: Optional[float] = setting(None, above=0, null="10% of the run's budget")


@dataclass
class TrainConfig:
    """conf/train.yaml: the groups, the objective returned to a sweeper, and the per-trial settings a
    sweeper fills in."""

    paths: PathsConfig = MISSING
    model: ModelConfig = MISSING
    task: TaskConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    lora: LoraConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    objective: str = setting("smoothed_loss", choices=OBJECTIVES)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    trial: Any = None  # the sweeper's reporter node, or null
    cuda_visible_devices: Any = None  # set per trial by the sweeper on a multi-GPU machine
    name: str = MISSING


SCHEMAS = {
    "train": TrainConfig,
    "paths": PathsConfig,
    "model": ModelConfig,
    "task": TaskConfig,
    "optimizer": OptimizerConfig,
    "scheduler": SchedulerConfig,
    "scheduler_cosine_with_restarts": CosineWithRestartsConfig,
    "lora": LoraConfig,
    "trainer": TrainerConfig,
    "logger": LoggerConfig,
    "logger_wandb": WandbLoggerConfig,
}


def register_schema() -> None:
    """Puts every schema where the yaml files' defaults lists name it: `/<name>_schema`."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=node, provider="lorasweep")


# --- checks ------------------------------------------------------------------------------------------


def check_config(cfg: DictConfig) -> None:
    """Raises ConfigError, in one line naming the key, the value and what the key takes, for the first
    setting that cannot work: a value out of its range, then the rules that tie keys together."""
    for prefix, node in _typed_nodes(cfg):
        known = {item.name for item in fields(OmegaConf.get_type(node))} | ({"hydra"} if not prefix else set())
        unknown = [key for key in node.keys() if key not in known]
        if unknown:  # appended with `+key=value`: Hydra lets that past a structured config
            raise ConfigError(_not_a_key(prefix + unknown[0]))
        for item in fields(OmegaConf.get_type(node)):
            valid = item.metadata.get("range")
            value = node.get(item.name)
            if valid is not None and not valid.allows(value):
                raise ConfigError(_refusal(prefix + item.name, value, OmegaConf.get_type(node)))
    for rule in RULES:
        rule(cfg)
    budget = known_budget(cfg.trainer)
    if budget is not None:
        check_budget(cfg.trainer, budget)


def check_lora_rank(rank: int, hidden_size: int, model: str) -> None:
    """A LoRA rank above the model's width adds parameters without adding capacity; refused where the
    width is known (before loading for a builtin or local model, after loading for any)."""
    if rank > hidden_size:
        raise ConfigError(
            f"lora.rank={rank} is larger than the hidden size of {model} ({hidden_size}): lora.rank takes an "
            f"integer >= 1 and <= {hidden_size} for this model (8-64 is usual)"
        )


def explain(error: BaseException) -> str:
    """One line for a refusal Hydra or OmegaConf raised while composing (a value of the wrong type, a
    key that no schema has, a missing group option), naming the key and what it takes."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, option = error.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not an option of {group}: choose {group}=" + " | ".join(sorted(error.options))
    cause = error if isinstance(error, OmegaConfBaseException) else error.__cause__
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        key = str(cause.full_key)
        detail = _first_line(getattr(cause, "msg", None) or str(cause))
        if "not in struct" in detail or ("Key" in detail and "not in" in detail):
            return _not_a_key(key)
        if _field_of(key, getattr(cause, "object_type", None)) is not None:
            return f"{_refusal(key, getattr(cause, 'value', None), getattr(cause, 'object_type', None))} ({detail})"
        return f"{key}: {detail}"
    return one_line(str(error))


def _not_a_key(key: str) -> str:
    group = key.rpartition(".")[0] or "the config"
    return f"{key} is not a key of {group}: check its spelling (the training config's keys, with their types and ranges: runs/schema.py)"


def _refusal(key: str, value: Any, schema: Any = None) -> str:
    """`key=value is not allowed: key takes <type> <range>[, or null (= meaning)]`: the one line for a
    value the schema refuses, by type or by range."""
    return f"{key}={_shown(value)} is not allowed: {key} takes {_takes(key, schema)}"


def _takes(key: str, schema: Any = None) -> str:
    """What `key` takes, in words, from its field in the schema."""
    found = _field_of(key, schema)
    if found is None:
        return "a value its group's schema allows (runs/schema.py)"
    hint, valid = found
    words = _type_words(hint)
    if valid is not None and valid.choices is not None:
        words = valid.describe()
    elif valid is not None and valid.describe():
        words += " " + valid.describe()
    if valid is not None and valid.null:
        words += f", or null (= {valid.null})"
    return words


# --- rules that tie keys together, or need more than a type and a range ----------------------------


def _check_budget_is_set(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    if not (trainer.epochs > 0 or trainer.max_steps > 0 or trainer.max_samples_seen > 0):
        raise ConfigError(
            "no training budget: trainer.epochs, trainer.max_steps and trainer.max_samples_seen are all 0 or off; "
            "set trainer.epochs > 0, trainer.max_steps >= 1 or trainer.max_samples_seen >= 1"
        )


def _check_val_size(cfg: DictConfig) -> None:
    """LLaMA-Factory's val_size: a fraction in [0, 1) of the rows, or a whole row count >= 1."""
    value = cfg.task.val_size
    if not (0 <= value < 1 or (value >= 1 and value == int(value))):
        raise ConfigError(f"task.val_size={_shown(value)} is not allowed: task.val_size takes a fraction in [0, 1) or a whole row count >= 1")
    if cfg.objective == "eval_loss" and value == 0:
        raise ConfigError("objective=eval_loss needs an eval split: set task.val_size (a fraction < 1 or a row count >= 1)")


def _check_usual_lr(cfg: DictConfig) -> None:
    optimizer = cfg.optimizer
    low, high = USUAL_LR
    if not optimizer.allow_any_lr and not low <= optimizer.lr <= high:
        raise ConfigError(
            f"optimizer.lr={_shown(optimizer.lr)} is outside the usual range for LoRA fine-tuning: optimizer.lr takes "
            f"a number >= {_shown(low)} and <= {_shown(high)} (set optimizer.allow_any_lr=true to train with it anyway)"
        )


def _check_betas(cfg: DictConfig) -> None:
    betas = list(cfg.optimizer.betas)
    if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
        raise ConfigError(f"optimizer.betas={betas} is not allowed: optimizer.betas takes two numbers >= 0 and < 1, e.g. [0.9, 0.999]")


def _check_scheduler_group(cfg: DictConfig) -> None:
    """num_cycles comes with the cosine_with_restarts group only: naming the schedule alone leaves it out."""
    if cfg.scheduler.name == "cosine_with_restarts" and "num_cycles" not in cfg.scheduler:
        raise ConfigError(
            "scheduler.name=cosine_with_restarts needs scheduler.num_cycles, which the scheduler=cosine_with_restarts "
            "group has: choose the group (scheduler=cosine_with_restarts) instead of setting scheduler.name"
        )


def _check_names(key: str, value: Any, allowed: str) -> None:
    names = OmegaConf.to_container(value) if OmegaConf.is_list(value) else value
    strings = (isinstance(names, str) and names.strip()) or (
        isinstance(names, list) and names and all(isinstance(name, str) and name.strip() for name in names))
    if not strings:
        raise ConfigError(f"{key}={_shown(names)} is not allowed: {key} takes {allowed}")


def _check_dataset(cfg: DictConfig) -> None:
    _check_names("task.dataset", cfg.task.dataset, "a list of names in dataset_info.json, e.g. [demo_yiliao], or a comma-separated string")


def _check_lora_target(cfg: DictConfig) -> None:
    _check_names("lora.target", cfg.lora.target, "all (every linear layer but lm_head) or a list of module names, e.g. [q_proj, v_proj]")


def _check_resume(cfg: DictConfig) -> None:
    resume = cfg.trainer.resume
    if not isinstance(resume, bool) and not (isinstance(resume, str) and resume.strip()):
        raise ConfigError(f"trainer.resume={_shown(resume)} is not allowed: trainer.resume takes true, false, or the path of a run dir or checkpoint")


RULES: tuple[Callable[[DictConfig], None], ...] = (
    _check_budget_is_set, _check_val_size, _check_usual_lr, _check_betas, _check_scheduler_group, _check_dataset,
    _check_lora_target, _check_resume,
)


# --- reading the schema -----------------------------------------------------------------------------


def _typed_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """The root and each group's node with their key prefixes, as far as the schema types them."""
    nodes = [("", cfg)]
    for name in (item.name for item in fields(TrainConfig)):
        node = cfg.get(name)
        if isinstance(node, DictConfig) and is_dataclass(OmegaConf.get_type(node)):
            nodes.append((f"{name}.", node))
    return nodes


def _field_of(key: str, schema: Any = None) -> tuple[Any, Range | None] | None:
    """The type hint and range of `key`: a field of `schema` (the node's dataclass, which knows an
    option's own fields such as scheduler.num_cycles), else found from TrainConfig down; None for a key
    the schema does not type."""
    *path, name = key.split(".")
    if not (isinstance(schema, type) and is_dataclass(schema)):
        schema = TrainConfig
        for part in path:
            schema = typing.get_type_hints(schema).get(part)
            if not (isinstance(schema, type) and is_dataclass(schema)):
                return None
    for item in fields(schema):
        if item.name == name:
            return typing.get_type_hints(schema)[name], item.metadata.get("range")
    return None


TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _type_words(hint: Any) -> str:
    options = [option for option in typing.get_args(hint) if option is not type(None)] if typing.get_origin(hint) is Union else [hint]
    if typing.get_origin(hint) is list or hint is list:
        return "a list"
    words = [TYPE_WORDS.get(option, "a value") for option in options]
    if words == ["an integer", "a number"]:
        return "a number"
    return " or ".join(dict.fromkeys(words))


def _shown(value: Any) -> str:
    """A value as the user would type it on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, float) and (value == 0 or 1e-4 <= abs(value) < 1e6) and math.isfinite(value):
        return repr(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Mapping) or OmegaConf.is_config(value):
        return str(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
    return str(value)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]

