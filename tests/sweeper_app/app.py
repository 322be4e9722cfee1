"""A tiny Hydra app that behaves like train.py towards a sweeper, in milliseconds instead of seconds.

It keeps train.py's side of the contract (docs/run_dir.md): builds the reporter from `trial`, reports a
decreasing curve at steps counted in samples, stops when told to prune, and writes result.json with
status completed / pruned / failed. Its curve falls linearly to (x - 0.3)^2 + shape offset + y/10 at
the last step, so tests know every value. `nan_above` turns the objective into NaN (a diverged run); `sleep_s` slows each step so a
test can kill the sweep while a trial runs; `crash` raises before result.json is written;
`two_objectives` returns [objective, y] for a multi-objective study; a trial with x above `hold_above` waits
before each step after the first while `hold_file` exists, so a test decides when it goes on. A trial ended under the job
(runs.trial.TrialEnded from the reporter) is recorded as train.py records it: failed, with the reason. `stream` names
the sample stream its reports claim (trials on different streams are never raced against each other).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from runs.trial import TrialEnded


def write_result(run_dir: Path, status: str, objective: float | None, reason: str | None, started: float) -> None:
    # elapsed: seconds since the job started, as train.py records it (bench/slot_utilisation.py reads it)
    result = {"status": status, "objective": objective, "reason": reason, "elapsed": time.time() - started}
    (run_dir / "result.json").write_text(json.dumps(result))


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | list[float]:
    started = time.time()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    reporter = hydra.utils.instantiate(cfg.trial) if cfg.get("trial") else None
    final = (cfg.x - 0.3) ** 2 + cfg.shape.offset + cfg.y / 10
    if cfg.nan_above is not None and cfg.x > cfg.nan_above:
        write_result(run_dir, "failed", None, f"loss is nan at step 1 (x={cfg.x} > nan_above={cfg.nan_above})", started)
        raise FloatingPointError("loss is nan")
    value = final
    for step in range(1, cfg.steps + 1):
        time.sleep(cfg.sleep_s)
        while step > 1 and cfg.hold_above is not None and cfg.x > cfg.hold_above and Path(cfg.hold_file).exists():
            time.sleep(0.1)
        value = final + (cfg.steps - step) / cfg.steps
        if reporter is not None:
            try:
                # the loss since the last report and the stream so far, as train.py reports them for the racing pruner
                reporter.report(value, step * cfg.batch, ((step - 1) * cfg.batch, step * cfg.batch, value, f"{cfg.stream}-{step}"))
            except TrialEnded as error:
                write_result(run_dir, "failed", None, str(error), started)
                raise
            if reporter.should_prune():
                write_result(run_dir, "pruned", value, f"pruned at {step * cfg.batch} samples", started)
                return value
    if cfg.crash:
        raise RuntimeError("crashed before writing result.json")
    write_result(run_dir, "completed", value, None, started)
    return [value, float(cfg.y)] if cfg.two_objectives else value


if __name__ == "__main__":
    main()
