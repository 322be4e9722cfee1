"""Where a study lives, how a job reaches it, and the lock that lets sweep processes share it.

The URL reaches jobs through the environment (LORASWEEP_STORAGE, inherited by joblib and submitit
workers), never through overrides: overrides are written to every run dir's .hydra/overrides.yaml,
and a PostgreSQL URL may hold a password.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

STORAGE_ENV = "LORASWEEP_STORAGE"
JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"
SQLITE_BUSY_TIMEOUT_S = 60  # several processes write one SQLite file; wait for the lock, don't fail
# not ".lock": Optuna's journal file backend takes `<file>.lock` for its own (symlink) lock
LOCK_SUFFIX = ".sweep-lock"
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def default_storage_url(storage_dir: str, study_name: str) -> str:
    """sqlite:///<storage_dir>/<study_name>.db: a stable path, outside the timestamped sweep dir, so the
    same command finds the same study again."""
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name)
    path = Path(storage_dir).resolve() / f"{safe_name}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE_PREFIX}{path}"


def resolve_storage_url(storage: str | None, storage_dir: str, study_name: str) -> str:
    """The configured URL with file paths made absolute (jobs may run elsewhere), or the default."""
    if not storage:
        return default_storage_url(storage_dir, study_name)
    file = storage_file(storage)
    if file is None:
        return storage
    prefix = JOURNAL_PREFIX if storage.startswith(JOURNAL_PREFIX) else SQLITE_PREFIX
    return f"{prefix}{file.resolve()}"


def mask_password(url: str) -> str:
    """The URL as it may be printed or logged: `postgresql://user:***@host/db`."""
    return _PASSWORD.sub(r"\1***@", url)


def storage_file(url: str) -> Path | None:
    """The file behind a file-backed storage (SQLite or journal), else None (a database server)."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX) :].removeprefix("//"))
    if url.startswith(SQLITE_PREFIX):
        return Path(url[len(SQLITE_PREFIX) :])
    return None


def open_storage(url: str) -> BaseStorage:
    """An Optuna storage for `url`: `journal:<path>` for a journal file (safe on a shared disk),
    else any SQLAlchemy URL Optuna's RDBStorage takes."""
    if url.startswith(JOURNAL_PREFIX):
        path = storage_file(url)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if url.startswith("sqlite") else None
    try:
        # two sweep processes starting at once would both create the schema (alembic_version UNIQUE error)
        with storage_lock(url):
            return RDBStorage(url, engine_kwargs=engine_kwargs)
    except (ImportError, ValueError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as error:
        raise ValueError(
            f"cannot open the Optuna storage {mask_password(url)}: {error}. Give hydra.sweeper.storage as "
            f"sqlite:///path.db, journal:path/to/file.log or postgresql://user:password@host/db"
        ) from None


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


@contextmanager
def storage_lock(url: str) -> Iterator[None]:
    """An exclusive lock shared by every sweep process on this machine that uses `url`, held while a
    process counts the study's trials and asks for new ones, so that processes together start exactly
    n_trials. Beside the file for file storages (works across machines where the shared disk honours
    flock); in the temp dir for database servers (then exact only among processes on one machine)."""
    file = storage_file(url)
    if file is not None:
        lock_path = file.with_name(file.name + LOCK_SUFFIX)
    else:
        digest = hashlib.sha1(url.encode()).hexdigest()[:16]
        lock_path = Path(tempfile.gettempdir()) / f"lorasweep-{digest}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
