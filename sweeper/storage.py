"""Where a sweep keeps its study and how a job reaches it (opening a URL is runs.storage).

The URL reaches jobs through the environment (LORASWEEP_STORAGE, inherited by joblib and submitit
workers), never through overrides: overrides are written to every run dir's .hydra/overrides.yaml,
and a PostgreSQL URL may hold a password.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from runs.storage import JOURNAL_PREFIX, SQLITE_PREFIX, STORAGE_ENV, StorageError, as_url, mask_password, storage_file
from sweeper.errors import SweepError

# a job's reporter node (Hydra override syntax), set per job with hydra.job.env_set and read by the
# config's `trial: ${oc.decode:${oc.env:LORASWEEP_TRIAL,null}}`: Hydra's launchers echo every job
# override except hydra.*, so this keeps the per-trial "Launching jobs" line short
TRIAL_ENV = "LORASWEEP_TRIAL"


def default_storage_url(storage_dir: str, study_name: str) -> str:
    """sqlite:///<storage_dir>/<study_name>.db: a stable path, outside the timestamped sweep dir, so the
    same command finds the same study again."""
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name)
    return f"{SQLITE_PREFIX}{Path(storage_dir).resolve() / f'{safe_name}.db'}"


def resolve_storage_url(storage: str | None, storage_dir: str, study_name: str) -> str:
    """The configured URL with file paths made absolute (jobs may run elsewhere), or the default; for a
    file storage, its directory made, or refused in one line when it cannot be made or written."""
    try:
        url = as_url(storage) if storage else default_storage_url(storage_dir, study_name)
    except StorageError as error:
        raise SweepError(f"hydra.sweeper.storage: {error}") from None
    file = storage_file(url)
    if file is None:
        return url
    file = file.resolve()
    setting = "hydra.sweeper.storage" if storage else "hydra.sweeper.storage_dir"
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SweepError(
            f"{setting}: cannot create the directory {file.parent} for the study {mask_password(url)} "
            f"({error.strerror or error}); give a path that can be created and written"
        ) from None
    if not os.access(file.parent, os.W_OK | os.X_OK) or (file.exists() and not os.access(file, os.W_OK)):
        raise SweepError(
            f"{setting}: {file if file.exists() else file.parent} is not writable, so the study "
            f"{mask_password(url)} cannot be written there; give a writable path"
        )
    prefix = JOURNAL_PREFIX if url.startswith(JOURNAL_PREFIX) else SQLITE_PREFIX
    return f"{prefix}{file}"


def storage_url_from_env() -> str:
    """The storage a job's reporter must use, as its sweeper process set it."""
    url = os.environ.get(STORAGE_ENV)
    if not url:
        raise RuntimeError(
            f"this run is configured as an Optuna trial (the `trial` config node is set) but "
            f"{STORAGE_ENV} is not in the environment. Start it through the sweeper "
            f"(`hydra/sweeper=lorasweep`), or set {STORAGE_ENV} to the study's storage URL, or drop `trial=`"
        )
    return url
