"""Token-for-token and label-for-label parity with LLaMA-Factory's qwen template (docs/parity.md),
through the public data entry point, with Qwen2.5's real vocabulary rebuilt offline."""
import csv
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from sft.data.prepare import prepare_datasets
from sft.lifecycle.errors import ConfigError, DataError

M = -100
SYSTEM_HEADER = [151644, 8948, 198]  # <|im_start|> system \n
USER_HEADER = [151644, 872, 198]  # <|im_start|> user \n
ASSISTANT_HEADER = [151644, 77091, 198]  # <|im_start|> assistant \n
END = [151645, 198]  # <|im_end|> \n


def write_dataset(directory, name, rows, formatting="alpaca", suffix=".json", extra=None):
    path = directory / f"{name}{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    info_path = directory / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    entry = {"file_name": path.name, "formatting": formatting}
    if formatting == "alpaca":
        entry["columns"] = {"prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"}
    else:
        entry["columns"] = {"messages": "conversations", "system": "system"}
    entry.update(extra or {})
    info[name] = entry
    info_path.write_text(json.dumps(info))


def task(directory, dataset="a", **overrides):
    settings = {"name": "t", "dataset": dataset if isinstance(dataset, list) else [dataset], "dataset_dir": str(directory), "formatting": None, "template": "qwen",
                "system": None, "cutoff_len": 1024, "max_samples": None, "val_size": 0, "encoding": None,
                "keep_rows_without_labels": False}
    settings.update(overrides)
    return OmegaConf.create(settings)


def prepare(tmp_path, tokenizer, dataset, **overrides):
    return prepare_datasets(task(tmp_path, dataset, **overrides), tokenizer, tmp_path / "cache", seed=0)


def enc(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


def test_alpaca_with_system_instruction_and_input(tmp_path, qwen_tokenizer):
    write_dataset(tmp_path, "a", [{"instruction": "Classify this", "input": "fever and cough", "output": "Respiratory", "system": "Be brief."}])
    row = prepare(tmp_path, qwen_tokenizer, "a").train[0]
    prompt = SYSTEM_HEADER + enc(qwen_tokenizer, "Be brief.") + END + USER_HEADER + enc(qwen_tokenizer, "Classify this\nfever and cough") + END + ASSISTANT_HEADER
    answer = enc(qwen_tokenizer, "Respiratory") + END
    assert row["input_ids"] == prompt + answer
    assert row["labels"] == [M] * len(prompt) + answer


@pytest.mark.parametrize("system", [None, ""])
def test_missing_or_empty_system_gets_qwen_default(tmp_path, qwen_tokenizer, system):
    write_dataset(tmp_path, "a", [{"instruction": "Hi", "output": "Hello", "system": system}])
    row = prepare(tmp_path, qwen_tokenizer, "a").train[0]
    default = enc(qwen_tokenizer, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
    assert row["input_ids"][: len(SYSTEM_HEADER) + len(default) + 2] == SYSTEM_HEADER + default + END


def test_history_turns_are_all_trained(tmp_path, qwen_tokenizer):
    write_dataset(tmp_path, "a", [{"instruction": "Second", "output": "B", "system": "S", "history": [["First", "A"]]}])
    row = prepare(tmp_path, qwen_tokenizer, "a").train[0]
    first_prompt = SYSTEM_HEADER + enc(qwen_tokenizer, "S") + END + USER_HEADER + enc(qwen_tokenizer, "First") + END + ASSISTANT_HEADER
    second_prompt = USER_HEADER + enc(qwen_tokenizer, "Second") + END + ASSISTANT_HEADER
    first_answer, second_answer = enc(qwen_tokenizer, "A") + END, enc(qwen_tokenizer, "B") + END
    assert row["input_ids"] == first_prompt + first_answer + second_prompt + second_answer
    assert row["labels"] == [M] * len(first_prompt) + first_answer + [M] * len(second_prompt) + second_answer


def test_answer_encoded_on_its_own_so_no_merge_crosses_the_boundary(tmp_path, qwen_tokenizer):
    write_dataset(tmp_path, "a", [{"instruction": "Q", "output": "\n\nA", "system": "S"}])
    row = prepare(tmp_path, qwen_tokenizer, "a").train[0]
    header_end = row["input_ids"].index(77091) + 1
    assert row["input_ids"][header_end - 1 : header_end + 2] == [77091, 198, 271]
    assert qwen_tokenizer.encode("assistant\n\n\nA", add_special_tokens=False)[1] == 1406  # one string would merge


def test_empty_output_still_trains_on_im_end(tmp_path, qwen_tokenizer):
    write_dataset(tmp_path, "a", [{"instruction": "Q", "output": "", "system": "S"}])
    row = prepare(tmp_path, qwen_tokenizer, "a").train[0]
    assert [label for label in row["labels"] if label != M] == END


def test_sharegpt_system_message_and_multi_turn(tmp_path, qwen_tokenizer):
    conversation = [{"from": "system", "value": "S"}, {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"},
                    {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]
    write_dataset(tmp_path, "s", [{"conversations": conversation}], formatting="sharegpt")
    row = prepare(tmp_path, qwen_tokenizer, "s").train[0]
    first_prompt = SYSTEM_HEADER + enc(qwen_tokenizer, "S") + END + USER_HEADER + enc(qwen_tokenizer, "Q1") + END + ASSISTANT_HEADER
    second_prompt = USER_HEADER + enc(qwen_tokenizer, "Q2") + END + ASSISTANT_HEADER
    a1, a2 = enc(qwen_tokenizer, "A1") + END, enc(qwen_tokenizer, "A2") + END
    assert row["input_ids"] == first_prompt + a1 + second_prompt + a2
    assert row["labels"] == [M] * len(first_prompt) + a1 + [M] * len(second_prompt) + a2


def test_truncated_answer_loses_its_im_end_and_keeps_its_start(tmp_path, qwen_tokenizer):
    answer_text = " ".join(["word"] * 200)
    write_dataset(tmp_path, "a", [{"instruction": "Q", "output": answer_text, "system": "S"}])
    data = prepare(tmp_path, qwen_tokenizer, "a", cutoff_len=64)
    row = data.train[0]
    prompt_len = len(SYSTEM_HEADER + enc(qwen_tokenizer, "S") + END + USER_HEADER + enc(qwen_tokenizer, "Q") + END + ASSISTANT_HEADER)
    assert len(row["input_ids"]) == 64
    assert row["input_ids"][prompt_len:] == enc(qwen_tokenizer, answer_text)[: 64 - prompt_len]
    assert 151645 not in row["input_ids"][prompt_len:]
    assert data.counts["truncated_rows"] == 1


def test_long_system_prompt_survives_while_the_question_is_cut(tmp_path, qwen_tokenizer):
    system = " ".join(["rule"] * 100)
    write_dataset(tmp_path, "a", [{"instruction": "What now?", "output": "ok", "system": system}])
    row = prepare(tmp_path, qwen_tokenizer, "a", cutoff_len=40).train[0]
    assert row["input_ids"][:40 - 3] == (SYSTEM_HEADER + enc(qwen_tokenizer, system))[: 40 - 3]
    assert 77091 not in row["input_ids"]  # the assistant header was cut with the question


def test_dropped_rows_are_counted_by_reason(tmp_path, qwen_tokenizer):
    write_dataset(tmp_path, "a", [{"instruction": "Q", "output": "A"}, {"instruction": "Q", "output": None}, {"instruction": "Q"}])
    data = prepare(tmp_path, qwen_tokenizer, "a")
    assert len(data.train) == 1
    assert data.counts["dropped"] == {"missing output": 2}
    bad = [{"conversations": [{"from": "human", "value": "Q"}]},
           {"conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]},
           {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}]
    write_dataset(tmp_path, "s", bad, formatting="sharegpt")
    data = prepare(tmp_path, qwen_tokenizer, "s")
    assert len(data.train) == 1
    assert sum(data.counts["dropped"].values()) == 2


def test_max_samples_takes_the_first_rows_and_val_size_holds_out(tmp_path, qwen_tokenizer):
    rows = [{"instruction": f"Q{i}", "output": f"A{i}", "system": "S"} for i in range(50)]
    write_dataset(tmp_path, "a", rows, suffix=".jsonl")
    data = prepare(tmp_path, qwen_tokenizer, "a", max_samples=10, val_size=2)
    assert (len(data.train), len(data.eval)) == (8, 2)
    seen = {qwen_tokenizer.decode(r["input_ids"]).split("user\n")[1].split("<|im_end|>")[0] for r in list(data.train) + list(data.eval)}
    assert seen == {f"Q{i}" for i in range(10)}


def test_parquet_and_gb18030_csv(tmp_path, qwen_tokenizer):
    write_dataset(tmp_path, "p", [{"instruction": "头痛", "output": "多休息", "input": "", "system": "S", "history": None}], suffix=".parquet")
    assert len(prepare(tmp_path, qwen_tokenizer, "p").train) == 1
    with open(tmp_path / "c.csv", "w", encoding="gb18030", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["department", "ask", "answer"])
        writer.writerow(["内科", "高血压患者能吃党参吗？", "高血压病人可以口服党参。"])
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    info["c"] = {"file_name": "c.csv", "columns": {"prompt": "ask", "response": "answer"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    row = prepare(tmp_path, qwen_tokenizer, "c", encoding="gb18030").train[0]
    assert "高血压患者能吃党参吗？" in qwen_tokenizer.decode(row["input_ids"])


def test_loaded_again_from_the_cache(tmp_path, qwen_tokenizer):
    write_dataset(tmp_path, "a", [{"instruction": "Q", "output": "A"}])
    def cache_dirs() -> list[Path]:
        return sorted(path for path in (tmp_path / "cache" / "tokenized").iterdir() if path.is_dir())

    first = prepare(tmp_path, qwen_tokenizer, "a")
    cached = cache_dirs()
    second = prepare(tmp_path, qwen_tokenizer, "a")
    assert len(cached) == 1 and cache_dirs() == cached
    assert first.train[0] == second.train[0] and first.counts == second.counts
    prepare(tmp_path, qwen_tokenizer, "a", cutoff_len=512)
    assert len(cache_dirs()) == 2


@pytest.mark.parametrize(
    ("setup", "overrides", "error", "message"),
    [
        ("none", {}, DataError, "no dataset_info.json"),
        ("missing_file", {}, DataError, "does not exist"),
        ("ok", {"dataset": ["nope"]}, DataError, "unknown dataset 'nope'"),
        ("no_column", {}, DataError, "no column"),
        ("ok", {"cutoff_len": 10}, ConfigError, "cutoff_len=10 is too small"),
        ("ok", {"template": "llama9"}, ConfigError, "unknown template"),
    ],
)
def test_bad_input_gives_a_clear_error(tmp_path, qwen_tokenizer, setup, overrides, error, message):
    if setup in ("ok", "no_column", "missing_file"):
        write_dataset(tmp_path, "a", [{"instruction": "Q", "output": "A"}] if setup != "no_column" else [{"question": "Q", "output": "A"}])
    if setup == "missing_file":
        (tmp_path / "a.json").unlink()
    with pytest.raises(error, match=message):
        prepare_datasets(task(tmp_path, **overrides), qwen_tokenizer, tmp_path / "cache", seed=0)


def test_rows_left_without_labels_are_dropped_or_kept_by_option(tmp_path, qwen_tokenizer):
    # both parts long (2T >= C, 2S >= C): max_T = int(60 * T / (S + T)) = 0 for T ~ 40, S ~ 4000
    long_question = {"instruction": " ".join(["long"] * 4000), "output": " ".join(["word"] * 40), "system": "S"}
    write_dataset(tmp_path, "a", [long_question, {"instruction": "Q", "output": "A", "system": "S"}])
    dropped = prepare(tmp_path, qwen_tokenizer, "a", cutoff_len=60)
    kept = prepare(tmp_path, qwen_tokenizer, "a", cutoff_len=60, keep_rows_without_labels=True)
    assert (len(dropped.train), len(kept.train)) == (1, 2)
    assert dropped.counts["dropped"] == {"no trainable label after cutoff": 1}
    assert kept.counts["rows_without_labels"] == 1 and kept.counts["dropped_rows"] == 0


def test_all_labels_masked_after_cutoff_is_an_error(tmp_path, qwen_tokenizer):
    write_dataset(tmp_path, "a", [{"instruction": " ".join(["long"] * 4000), "output": " ".join(["word"] * 40), "system": "S"}])
    for keep in (False, True):
        with pytest.raises(DataError, match="no usable training rows.*cutoff_len=60"):
            prepare(tmp_path, qwen_tokenizer, "a", cutoff_len=60, keep_rows_without_labels=keep)


def test_hub_entries_load_through_datasets_and_modelscope_is_named_when_missing(tmp_path, qwen_tokenizer, monkeypatch):
    hub_copy = tmp_path / "hub_copy"
    hub_copy.mkdir()
    (hub_copy / "train.json").write_text(json.dumps([{"instruction": "Q", "output": "A"}]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "from_hub": {"hf_hub_url": str(hub_copy)},  # datasets.load_dataset reads a local copy of a hub repo alike
        "from_modelscope": {"ms_hub_url": "someone/yiliao", "hf_hub_url": str(hub_copy)},
    }))
    assert len(prepare(tmp_path, qwen_tokenizer, "from_hub").train) == 1
    assert len(prepare(tmp_path, qwen_tokenizer, "from_modelscope").train) == 1  # HF unless USE_MODELSCOPE_HUB=1
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")
    monkeypatch.setitem(sys.modules, "modelscope", None)
    with pytest.raises(DataError, match="on ModelScope.*modelscope"):
        prepare(tmp_path, qwen_tokenizer, "from_modelscope")
