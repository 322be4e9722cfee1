"""runs.storage: the URL forms a study's storage takes, and what is derived from a URL (never its password)."""
import pytest
import sqlalchemy

from runs import storage
from runs.storage import StorageError, lock_digest, mask_password, open_storage, storage_lock


@pytest.mark.parametrize("url, driver", [
    ("postgresql://me:s3cret@db.example/optuna", "psycopg"),
    ("postgresql+psycopg2://me:s3cret@db.example/optuna", "psycopg2"),
])
def test_postgresql_url_forms_find_their_driver(url, driver):
    # create_engine imports the driver module without connecting: the `cluster` extra installs both
    assert sqlalchemy.create_engine(url).dialect.driver == driver


def test_lock_name_does_not_derive_from_the_password(tmp_path, monkeypatch):
    monkeypatch.setattr(storage.tempfile, "gettempdir", lambda: str(tmp_path))
    first, second = "postgresql://me:s3cret@db.example/optuna", "postgresql://me:other@db.example/optuna"
    assert lock_digest(first) == lock_digest(second) == lock_digest(mask_password(first))
    with storage_lock(first), storage_lock("postgresql://me:s3cret@db.example/other"):
        pass
    locks = [path.name for path in tmp_path.iterdir()]
    assert len(locks) == 2 and not [name for name in locks if "s3cret" in name]


def test_unknown_scheme_is_one_line_naming_the_url_forms(tmp_path):
    with pytest.raises(StorageError) as error:
        open_storage("foo://me:s3cret@host/db")
    message = str(error.value)
    assert "\n" not in message and "foo://me:***@host/db" in message and "postgresql://" in message
    assert "s3cret" not in message
