"""A study's storage from its URL: the one place that parses and opens the URLs the sweeper writes to
and the analysis reads from.

`journal:<path>` is an Optuna JournalFileBackend file (safe on a shared disk); anything else with `://`
is a SQLAlchemy URL for Optuna's RDBStorage (sqlite:///path.db, postgresql://user:password@host/db).
`postgresql://` is SQLAlchemy 2's psycopg (3) driver and `postgresql+psycopg2://` psycopg2; the `cluster`
extra installs both, so either form of a URL works. Optuna is imported only when a storage is opened.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STORAGE_ENV = "LORASWEEP_STORAGE"  # the URL from the environment: a password stays off the command line
JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"
JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")  # a bare path with one of these is a journal file
SQLITE_BUSY_TIMEOUT_S = 60  # several processes write one SQLite file; wait for the lock, don't fail
# not ".lock": Optuna's journal file backend takes `<file>.lock` for its own (symlink) lock
LOCK_SUFFIX = ".sweep-lock"
SCHEMA_LOCK = "schema"  # the lock name while a storage's tables are created (before any study exists)
URL_FORMS = "sqlite:///path.db, journal:path/to/file.log or postgresql://user:password@host/db"
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


class StorageError(ValueError):
    """A storage that cannot be opened; the message names it (password masked) and the fix."""


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


def as_url(storage: str) -> str:
    """A URL for a URL or a bare file path: `x.db` is SQLite, `x.log` / `.jsonl` / `.journal` a journal."""
    if storage.startswith(JOURNAL_PREFIX) or "://" in storage:
        return storage
    path = Path(storage)
    if path.suffix in JOURNAL_SUFFIXES:
        return f"{JOURNAL_PREFIX}{path}"
    if path.suffix == ".db":
        return f"{SQLITE_PREFIX}{path}"
    raise StorageError(
        f"{storage}: not a storage Optuna can open; give a URL ({URL_FORMS}), a .db file or a journal file "
        f"ending in {', '.join(JOURNAL_SUFFIXES)}"
    )


def open_storage(storage: str, create: bool = True) -> Any:
    """An Optuna storage for a URL or file path. create=False (reading a study) refuses a file that does
    not exist, since Optuna would silently create an empty storage there."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend
    from sqlalchemy.exc import SQLAlchemyError

    url = as_url(storage)
    file = storage_file(url)
    if file is not None and not create and not file.is_file():
        kind = "journal" if url.startswith(JOURNAL_PREFIX) else "SQLite"
        raise StorageError(f"{mask_password(storage)}: no such {kind} file {file}; check the path")
    if url.startswith(JOURNAL_PREFIX):
        assert file is not None
        file.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(file)))
    engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if url.startswith("sqlite") else None
    try:
        if not create:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        # two sweep processes starting at once would both create the schema (alembic_version UNIQUE error)
        with storage_lock(url, SCHEMA_LOCK):
            return RDBStorage(url, engine_kwargs=engine_kwargs)
    except StorageError:
        raise
    except (ImportError, ValueError, SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StorageError(f"cannot open the Optuna storage {mask_password(url)}: {message}. Give it as {URL_FORMS}") from None


@functools.lru_cache(maxsize=None)
def process_storage(url: str) -> Any:
    """The storage for `url`, opened once per process and shared by all its users: with the basic
    launcher every trial runs in the sweep process, and opening an RDB storage (engine, schema
    check) costs about 0.5 s each time."""
    return open_storage(url)


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory lock key (a signed 64-bit int) for a lock name: from the name only, so
    every sweep process of a study, on any machine, whatever credentials it connects with, takes the
    same lock, and the key says nothing about the URL."""
    digest = hashlib.sha256(f"lorasweep:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@functools.lru_cache(maxsize=None)
def _lock_engine(url: str) -> Any:
    """One engine per database URL for the locks: a connection is taken from its pool per lock, not
    opened anew each pass of a sweep's loop."""
    import sqlalchemy

    return sqlalchemy.create_engine(url, pool_pre_ping=True)


@contextmanager
def storage_lock(url: str, name: str) -> Iterator[None]:
    """An exclusive lock that lives with the storage, shared by every process on every machine that
    uses it: held while a sweep process counts the study's trials and asks for new ones, so that the
    processes together start exactly n_trials. A file storage (SQLite, a journal file) has one lock
    file beside it, for all its studies (an flock, which a shared disk must honour); PostgreSQL a
    session-level advisory lock keyed by `name` (the study), released by the server when the holding
    process's connection ends, however the process ends."""
    file = storage_file(url)
    if file is not None:
        lock_path = file.with_name(file.name + LOCK_SUFFIX)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    import sqlalchemy

    if sqlalchemy.engine.make_url(url).get_backend_name() != "postgresql":
        raise StorageError(
            f"{mask_password(url)}: not a storage whose sweep processes can share a lock (SQLite, a journal "
            f"file or PostgreSQL); give it as {URL_FORMS}"
        )
    key = advisory_key(name)
    with _lock_engine(url).connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()
