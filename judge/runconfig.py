"""A run's own composed config (`.hydra/config.yaml`), resolved as train.py resolved it."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from judge.errors import JudgeInputError
from judge.metrics import METRICS
from runs.project import register_project_dir

CONFIG_FILE = Path(".hydra") / "config.yaml"


def load_run_config(run_dir: Path) -> DictConfig:
    """The run's config with every interpolation resolved (paths, cache dir, data dir)."""
    register_project_dir()
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise JudgeInputError(f"{path}: no such file; judge reads each run's composed config (a run dir written by train.py)")
    try:
        cfg = OmegaConf.load(path)
        OmegaConf.resolve(cfg)
    except (OmegaConfBaseException, OSError, ValueError) as error:
        raise JudgeInputError(f"{path}: cannot read or resolve the config ({error})") from None
    return cfg


def task_metric(cfg: DictConfig, run_dir: Path, override: str | None) -> str:
    """The held-out metric: --metric, else the run's task.metric."""
    metric = override or cfg.task.get("metric")
    if metric is None:
        raise JudgeInputError(
            f"{run_dir / CONFIG_FILE}: task.metric is not set; pass --metric {'|'.join(METRICS)} "
            "(or set task.metric in the task config before training)"
        )
    if metric not in METRICS:
        raise JudgeInputError(f"{run_dir / CONFIG_FILE}: task.metric={metric!r} is not one of {', '.join(METRICS)}")
    return str(metric)
