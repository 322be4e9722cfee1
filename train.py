"""Train one LoRA run (or, with -m / sweep=..., many): `python train.py experiment=quickstart`.

Thin on purpose: Hydra composes conf/train.yaml, the recipe in sft.train does the work, and the
return value is the objective a Hydra sweeper optimises. A failed run has written result.json
before its error is raised, so a multirun records it and goes on.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("train")

# conf/paths uses ${project_dir:} so the shipped demo data is found from any working directory
OmegaConf.register_new_resolver("project_dir", lambda: str(Path(__file__).resolve().parent), replace=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    if cfg.get("cuda_visible_devices") is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(cfg.cuda_visible_devices)
    from hydra.utils import instantiate

    from runs.result import write_failure
    from sft.checks import check_config
    from sft.errors import TrainingFailed

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        try:  # settings that cannot work are refused here, before torch is imported
            check_config(cfg)
        except ValueError as error:
            write_failure(Path(run_dir), str(error), cfg.objective)
            raise
        from sft.train import run_training

        reporter = instantiate(cfg.trial) if cfg.get("trial") else None
        result = run_training(cfg, run_dir, reporter)
    except (ValueError, TrainingFailed) as error:
        if HydraConfig.get().mode == RunMode.RUN:
            log.error("%s", error)
            sys.exit(1)
        raise
    log.info("%s: %s = %s (run dir %s)", result["status"], result["objective_name"], result["objective"], run_dir)
    return result["objective"]


if __name__ == "__main__":
    main()
