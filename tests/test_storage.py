"""runs.storage: the URL forms a study's storage takes, the lock that lives with it, and what is derived from a URL
(never its password)."""
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy

from runs.storage import StorageError, advisory_key, open_storage, storage_lock


@pytest.mark.parametrize("url, driver", [
    ("postgresql://me:s3cret@db.example/optuna", "psycopg"),
    ("postgresql+psycopg2://me:s3cret@db.example/optuna", "psycopg2"),
])
def test_postgresql_url_forms_find_their_driver(url, driver):
    # create_engine imports the driver module without connecting: the `cluster` extra installs both
    assert sqlalchemy.create_engine(url).dialect.driver == driver


@pytest.mark.parametrize("url", ["journal:{d}/shared/study.log", "sqlite:///{d}/shared/study.db"])
def test_the_lock_of_a_file_storage_lies_beside_it_not_in_the_temp_dir(tmp_path, monkeypatch, url):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    (tmp_path / "temp").mkdir()
    with storage_lock(url.format(d=tmp_path), "study"):
        pass
    assert [path.name for path in (tmp_path / "shared").iterdir()] == [Path(url).name + ".sweep-lock"]
    assert not list((tmp_path / "temp").iterdir())


def test_a_postgresql_lock_is_an_advisory_lock_keyed_by_the_study_alone(postgres_url):
    engine = sqlalchemy.create_engine(postgres_url)

    def free(name: str) -> bool:
        with engine.connect() as other:  # another session, as another machine's process would hold
            taken = other.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(name)}).scalar()
            if taken:
                other.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(name)})
            return taken

    name = f"lock-{uuid.uuid4().hex[:8]}"
    with storage_lock(postgres_url, name):
        assert not free(name) and free(name + "-other")
    assert free(name)


def test_unknown_scheme_is_one_line_naming_the_url_forms(tmp_path):
    with pytest.raises(StorageError) as error:
        open_storage("foo://me:s3cret@host/db")
    message = str(error.value)
    assert "\n" not in message and "foo://me:***@host/db" in message and "postgresql://" in message
    assert "s3cret" not in message
