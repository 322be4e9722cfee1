"""The demo data generator: deterministic, reproduces the committed files, and every file loads."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from sft.data.demo_data import DATASET_INFO, write_demo_data

COMMITTED_DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("demo_data")
    write_demo_data(out_dir)
    return out_dir


def test_generator_reproduces_committed_files_byte_for_byte(generated_dir: Path) -> None:
    for path in sorted(generated_dir.iterdir()):
        committed = COMMITTED_DATA_DIR / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed} differs from the generator's output: run `python -m sft.data.demo_data data/` and commit")


def test_generator_is_deterministic(generated_dir: Path, tmp_path: Path) -> None:
    write_demo_data(tmp_path)
    for path in sorted(generated_dir.iterdir()):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


def test_other_seed_gives_other_rows(generated_dir: Path, tmp_path: Path) -> None:
    write_demo_data(tmp_path, seed=1)
    assert (tmp_path / "demo_cate.json").read_bytes() != (generated_dir / "demo_cate.json").read_bytes()


@pytest.mark.parametrize("name", sorted(DATASET_INFO))
def test_every_file_loads_with_datasets(name: str) -> None:
    info = json.loads((COMMITTED_DATA_DIR / "dataset_info.json").read_text(encoding="utf-8"))[name]
    rows = datasets.load_dataset("json", data_files=str(COMMITTED_DATA_DIR / info["file_name"]), split="train")
    expected_columns = set(info["columns"].values())
    assert expected_columns <= set(rows.column_names)
    assert len(rows) >= 200


def test_alpaca_rows_have_the_promised_shapes() -> None:
    rows = json.loads((COMMITTED_DATA_DIR / "demo_yiliao.json").read_text(encoding="utf-8"))
    assert len(rows) == 1200
    with_history = [row for row in rows if "history" in row]
    assert with_history and all(len(pair) == 2 for row in with_history for pair in row["history"])
    assert any("system" in row for row in rows)
    assert all(row["output"] for row in rows)


def test_sharegpt_rows_alternate_human_and_gpt() -> None:
    rows = json.loads((COMMITTED_DATA_DIR / "demo_yiliao_sharegpt.json").read_text(encoding="utf-8"))
    assert any(len(row["conversations"]) > 2 for row in rows)
    for row in rows:
        roles = [message["from"] for message in row["conversations"]]
        assert roles == ["human", "gpt"] * (len(roles) // 2)


def test_spo_outputs_are_json_triples() -> None:
    rows = json.loads((COMMITTED_DATA_DIR / "demo_spo.json").read_text(encoding="utf-8"))
    for row in rows:
        triples = json.loads(row["output"])
        assert triples and all(set(triple) == {"subject", "predicate", "object"} for triple in triples)
        assert all(triple["subject"] in row["input"] and triple["object"] in row["input"] for triple in triples)
