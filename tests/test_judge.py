"""python -m judge: held-out metrics from real generations of tiny trained adapters, the base model as
its own row, the side-by-side report, eval.json joined into the analysis ranking, the serve command,
merging, adapter switching, and one-line errors for bad input."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from judge.cli import main
from judge.metrics import classification, rouge_l_chars, score, triples
from tests.conftest import ROOT, run_train

pytestmark = pytest.mark.xdist_group("judge")  # under pytest-xdist one worker trains the sweep for them all

TRAIN = ["-m", "experiment=quickstart", "task=cate,spo", "task.dataset=[demo_${task.name}]", "task.max_samples=80",
         "task.val_size=12", "trainer.max_steps=8", "trainer.logging_steps=2", "trainer.eval_steps=4", "trainer.save_steps=100"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, cache_dir):
    """One multirun of two tiny runs: cate (run 0) and spo (run 1), 8 steps each, 12 held-out rows."""
    root = tmp_path_factory.mktemp("judge")
    run_train([*TRAIN, f"hydra.sweep.dir={root / 'sweep'}"], root, cache_dir)
    return root / "sweep"


@pytest.fixture
def env(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LORASWEEP_CACHE", str(cache_dir))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


def test_planted_answers_are_counted_right():
    labels = classification(["体育", "答案：财经。", "不知道", "体育"], ["体育", "财经", "科技", "财经"])
    # 体育: tp 1, predicted 2, true 1 -> 2/3; 财经: tp 1, predicted 1, true 2 -> 2/3; 科技: 0
    assert labels == {"accuracy": 0.5, "macro_f1": pytest.approx((2 / 3 + 2 / 3 + 0) / 3), "unparseable": 1,
                      "predicted_unreferenced": []}
    reference = '[{"subject": "雪来信", "predicate": "作者", "object": "胡杰"}, {"subject": "孙伟", "predicate": "毕业院校", "object": "复旦大学"}]'
    answers = ['输出：[{"subject": "雪来信", "predicate": "作者", "object": "胡杰"}, {"subject": "孙伟", "predicate": "出生地", "object": "上海"}]',
               '[{"subject": "张伟"', "no triples here"]
    scores = triples(answers, [reference, reference, reference])
    # one right triple of 2 predicted, 6 expected; two answers unparseable
    assert scores == {"precision": 0.5, "recall": pytest.approx(1 / 6), "f1": pytest.approx(2 * 1 / 8),
                      "unparseable": 2, "unparseable_references": 0}
    assert rouge_l_chars("头痛要休息", "头痛请休息") == pytest.approx(0.8)
    assert rouge_l_chars("", "头痛") == 0.0


def test_a_valid_label_no_reference_has_is_a_prediction_and_counts_in_macro_f1():
    references = ["体育", "体育", "财经", "科技"]
    answers = ["体育", "体育", "旅游", "旅游"]  # 旅游 is a training label that no held-out row has
    scores = classification(answers, references, labels=["体育", "财经", "科技", "旅游", "军事"])
    # 体育 1.0; 财经 0; 科技 0; 旅游 (predicted twice, never right) 0: over 4 labels, not the references' 3
    assert scores == {"accuracy": 0.5, "macro_f1": pytest.approx(1 / 4), "unparseable": 0, "predicted_unreferenced": ["旅游"]}
    assert classification(answers, references)["unparseable"] == 2  # without the training labels it would not parse


def eval_doc(name: str, accuracy: float, base: float = 0.1) -> tuple[str, dict]:
    return name, {"primary": {"name": "accuracy", "direction": "maximize"}, "adapter": {"accuracy": accuracy}, "base": {"accuracy": base}}


def test_runs_with_the_same_best_value_are_named_as_a_tie():
    from analysis.eval_results import heldout_verdict

    three = heldout_verdict([eval_doc("a", 0.415), eval_doc("b", 0.415), eval_doc("c", 0.415)])
    assert three[0] == "Held-out accuracy: all 3 evaluated runs tie (accuracy 0.415); held-out data does not tell them apart."
    assert three[1].endswith("the 3 tied runs are better.") and "best" not in " ".join(three)
    two = heldout_verdict([eval_doc("a", 0.3), eval_doc("b", 0.5), eval_doc("c", 0.5)])
    assert two[0] == ("Held-out accuracy: 2 of the 3 evaluated runs tie for best (accuracy 0.5: b, c); "
                      "the run ranked best by smoothed training loss, a, has 0.3.")
    one = heldout_verdict([eval_doc("a", 0.5), eval_doc("b", 0.3)])
    assert one[0].startswith("Held-out accuracy: the run ranked best by smoothed training loss (a) is also the best")


def test_serve_command_names_every_path_absolutely_and_uses_json_where_name_path_cannot_carry_it(tmp_path, monkeypatch):
    import shlex

    from judge.serve import vllm_command

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "runs" / "lr=1e-3,bs=8").mkdir(parents=True)
    (tmp_path / "runs" / "plain").mkdir()
    command = vllm_command("models/base", {"cate-trial-1": Path("runs/lr=1e-3,bs=8"), "cate-trial-2": Path("runs/plain")}, [8, 16])
    parts = shlex.split(command)
    assert parts[:3] == ["vllm", "serve", str(tmp_path / "models" / "base")]
    odd, plain = parts[parts.index("--lora-modules") + 1 : parts.index("--max-lora-rank")]
    # vLLM's rule: an entry with '=' and no ',' is name=path split at its one '='; anything else is JSON
    assert json.loads(odd) == {"name": "cate-trial-1", "path": str(tmp_path / "runs" / "lr=1e-3,bs=8")}
    assert plain == f"cate-trial-2={tmp_path / 'runs' / 'plain'}" and "," not in plain and plain.count("=") == 1
    assert parts[parts.index("--max-lora-rank") + 1] == "16"
    assert vllm_command("Qwen/Qwen2.5-0.5B-Instruct", {"a": Path("runs/plain")}, [8]).split()[2] == "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.mark.slow
def test_cate_sweep_judged_against_the_base_model(sweep, env, capsys):
    out = env / "out"
    report = env / "compare.html"
    assert main([str(sweep), "--task", "cate", "--top", "3", "--report", str(report), "--out", str(out)]) == 0
    run_dir = sweep / "0"
    document = json.loads((run_dir / "eval.json").read_text())
    adapter, base = document["adapter"], document["base"]
    assert document["metric"] == "label" and document["split"]["rows"] == 12
    # the held-out rows and the token-weighted loss are the ones training evaluated on
    last_eval = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if "eval_loss" in line][-1]
    assert adapter["eval_loss"] == pytest.approx(last_eval["eval_loss"], rel=1e-4)
    assert base["eval_loss"] != pytest.approx(adapter["eval_loss"])
    # every metric comes from the answers the models generated
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 12 and all(isinstance(row["base"], str) for row in answers)
    trained_labels = {row["output"] for row in json.loads((ROOT / "data" / "demo_cate.json").read_text())[:80]}  # task.max_samples
    for result, name in ((adapter, adapter["name"]), (base, "base")):
        rescored = score("label", [row[name] for row in answers], [row["reference"] for row in answers], sorted(trained_labels))
        assert {key: result[key] for key in rescored} == rescored
    majority = document["majority"]
    assert majority["answer"] in trained_labels and majority["accuracy"] == sum(row["reference"] == majority["answer"] for row in answers) / 12
    html = report.read_text()
    assert "Side by side" in html and "<th>base</th>" in html and f"<th>{adapter['name']}</th>" in html
    command = (out / "serve.sh").read_text().splitlines()[-1]
    assert command.startswith("vllm serve ") and "--enable-lora" in command and "--max-lora-rank 16" in command
    modules = command.split("--lora-modules ")[1].split(" --")[0].split()
    assert modules == [f"{adapter['name']}={run_dir.resolve()}"] and all(Path(m.split("=", 1)[1]).is_dir() for m in modules)
    capsys.readouterr()

    from analysis.cli import main as analysis_main

    assert analysis_main(["rank", str(sweep), "--json", str(env / "rank.json")]) == 0
    ranked = json.loads((env / "rank.json").read_text())
    row = next(r for r in ranked["rows"] if r["path"].endswith("/0"))
    assert row["heldout_accuracy"] == adapter["accuracy"] and row["heldout_eval_loss"] == adapter["eval_loss"]
    assert any(message.startswith("Held-out accuracy") for message in ranked["messages"])
    assert "The base model with no adapter has accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_spo_triples_text_prompts_and_wandb(sweep, env, capsys):
    run_dir = env / "spo"
    shutil.copytree(sweep / "1", run_dir)
    config_path = run_dir / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["logger"] = {"name": "wandb", "project": "judge-test", "entity": None, "group": "notes-spo", "mode": "offline"}
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True))
    prompts = env / "q.jsonl"
    prompts.write_text('{"prompt": "张伟出生于北京。"}\n\n{"prompt": "《春之歌》的作者是李娜。", "reference": "[]"}\n', encoding="utf-8")
    assert main([str(run_dir), "--prompts", str(prompts), "--report", str(env / "r.md"), "--out", str(env / "o")]) == 0
    scores = json.loads((run_dir / "eval.json").read_text())["adapter"]
    assert {"precision", "recall", "f1", "unparseable", "perplexity"} <= set(scores)
    markdown = (env / "r.md").read_text()
    assert "| 张伟出生于北京。 |" in markdown and "| 《春之歌》的作者是李娜。 | [] |" in markdown
    printed = capsys.readouterr().out
    wandb_dir = Path(printed.split("W&B run: ")[1].split()[0])
    from analysis.load_wandb import inspect

    assert "notes-spo" in inspect(wandb_dir)
    assert main([str(run_dir), "--metric", "text", "--limit", "4", "--out", str(env / "o")]) == 0
    text_scores = json.loads((run_dir / "eval.json").read_text())
    assert text_scores["split"]["rows"] == 4 and 0 <= text_scores["adapter"]["rouge_l_chars"] <= 1


@pytest.mark.slow
def test_switching_adapters_equals_loading_each_and_merge_matches(sweep, env):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from judge.models import AdapterSet, generate, load_base
    from judge.runconfig import load_run_config
    from judge.serve import merge_adapter
    from sft.model.load import load_base_model, load_tokenizer

    cfg = load_run_config(sweep / "0")
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    ids = torch.tensor([tokenizer.encode("请判断下面这段文字属于哪个类别", add_special_tokens=False)])
    adapters = AdapterSet(load_base(cfg), {"cate": sweep / "0", "spo": sweep / "1"})
    with torch.no_grad():
        switched = {}
        for name in ("spo", "cate", None):
            with adapters.active(name) as model:
                switched[name] = model(input_ids=ids).logits
        alone = PeftModel.from_pretrained(load_base_model(cfg.model, "fp32", cfg.paths.cache_dir), str(sweep / "1"))
        torch.testing.assert_close(switched["spo"], alone(input_ids=ids).logits)
        plain = load_base_model(cfg.model, "fp32", cfg.paths.cache_dir)
        torch.testing.assert_close(switched[None], plain(input_ids=ids).logits)
        assert not torch.allclose(switched["cate"], switched["spo"])
        with adapters.active("cate") as model:
            prompts = [ids[0, :5].tolist(), ids[0].tolist()]
            batched = generate(model, prompts, tokenizer, 2, 6, lambda _: None)
            assert batched == [generate(model, [p], tokenizer, 1, 6, lambda _: None)[0] for p in prompts]
        merged_dir = merge_adapter(cfg, sweep / "0", tokenizer, env / "merged")
        assert (merged_dir / "model.safetensors").is_file()
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
        torch.testing.assert_close(merged(input_ids=ids).logits, switched["cate"], atol=1e-5, rtol=1e-5)


def broken_prompts(sweep: Path, tmp: Path) -> tuple[list[str], str]:
    path = tmp / "q.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": "cut off\n', encoding="utf-8")
    return [str(sweep / "0"), "--prompts", str(path)], f"{path}: line 2 is not valid JSON"


def other_base(sweep: Path, tmp: Path) -> tuple[list[str], str]:
    copy = tmp / "other"
    shutil.copytree(sweep / "0", copy)
    settings = json.loads((copy / "adapter_config.json").read_text())
    settings["base_model_name_or_path"] = "Qwen/Qwen2.5-0.5B-Instruct"
    (copy / "adapter_config.json").write_text(json.dumps(settings))
    return [str(sweep / "0"), str(copy), "--top", "2"], f"{copy / 'adapter_config.json'}: trained on base model 'Qwen/Qwen2.5-0.5B-Instruct'"


def no_metric(sweep: Path, tmp: Path) -> tuple[list[str], str]:
    copy = tmp / "nometric"
    shutil.copytree(sweep / "0", copy)
    config_path = copy / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    del config["task"]["metric"]
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return [str(copy)], f"{config_path}: task.metric is not set"


def missing_path(sweep: Path, tmp: Path) -> tuple[list[str], str]:
    return [str(tmp / "nowhere")], f"{tmp / 'nowhere'}: no such run dir or sweep folder"


def two_tasks(sweep: Path, tmp: Path) -> tuple[list[str], str]:
    return [str(sweep), "--top", "2"], "different metrics (label, triples)"


@pytest.mark.slow
@pytest.mark.parametrize("case", [broken_prompts, other_base, no_metric, missing_path, two_tasks])
def test_bad_input_is_one_line_and_exit_2(case, sweep, env, capsys):
    argv, expected = case(sweep, env)
    assert main([*argv, "--out", str(env / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("judge: ") and expected in err and "\n" not in err and "Traceback" not in err


# 11 labels, 45% of the rows the commonest; a row's label is drawn independently of its text, so the best an
# adapter can learn is to always answer the commonest label: a degenerate adapter, made on purpose
ELEVEN_LABELS = {"财经": 90, "体育": 30, "健康": 20, "娱乐": 15, "教育": 12, "科技": 10, "军事": 8, "汽车": 6, "房产": 4, "游戏": 3, "旅游": 2}


def eleven_label_task(data_dir: Path) -> None:
    """A classification data set with 11 labels (200 rows, LLaMA-Factory's alpaca layout) in data_dir."""
    texts = [row["input"] for row in json.loads((ROOT / "data" / "demo_cate.json").read_text(encoding="utf-8"))]
    labels = [label for label, count in ELEVEN_LABELS.items() for _ in range(count)]
    instruction = f"请判断下面这段文字属于哪个类别，只回答类别名称。可选类别：{'、'.join(ELEVEN_LABELS)}。"
    rows = [{"instruction": instruction, "input": texts[(index * 7) % len(texts)], "output": label} for index, label in enumerate(labels)]
    data_dir.mkdir(parents=True)
    (data_dir / "eleven.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    (data_dir / "dataset_info.json").write_text(json.dumps({"eleven": {"file_name": "eleven.json", "formatting": "alpaca", "columns": columns}}))


@pytest.mark.slow
def test_degenerate_adapters_of_an_11_label_task_are_no_better_than_the_majority_class(env, cache_dir):
    import torch

    eleven_label_task(env / "data")
    sweep_dir = env / "eleven"
    run_train(["-m", "experiment=quickstart", "task=cate", f"task.dataset_dir={env / 'data'}", "task.dataset=[eleven]",
               "task.val_size=40", "trainer.seed=1,2,3", f"hydra.sweep.dir={sweep_dir}"], env, cache_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main([str(sweep_dir), "--top", "3", "--max-new-tokens", "4", "--side-by-side", "2", "--out", str(env / "o"),
                     "--report", str(env / "r.md")]) == 0
        assert torch.get_num_threads() == 1  # the tiny model's model.cpu_threads
    finally:
        torch.set_num_threads(threads)
    answers = [json.loads(line) for line in (env / "o" / "answers.jsonl").read_text().splitlines()]
    references = [row["reference"] for row in answers]
    names = [name for name in answers[0] if name.startswith("cate-")]
    assert len(names) == 3 and len(answers) == 40
    for name in names:  # degenerate: one answer, naming the commonest training label, on every row
        assert len({row[name] for row in answers}) == 1 and answers[0][name].startswith("财经")
    documents = [json.loads((sweep_dir / str(job) / "eval.json").read_text()) for job in range(3)]
    majority = documents[0]["majority"]
    share = references.count("财经") / 40
    assert majority["answer"] == "财经" and majority["accuracy"] == share
    for document in documents:
        assert document["adapter"]["accuracy"] == share
        # no valid label is unparseable; macro-F1 averages over the references' labels (财经, predicted, is one)
        assert document["adapter"]["unparseable"] == 0 and document["adapter"]["predicted_unreferenced"] == []
        assert document["adapter"]["macro_f1"] == pytest.approx((2 * share / (1 + share)) / len(set(references)))
    report = (env / "r.md").read_text()
    assert f"| always '财经' | - | - | - | - | {share:.4g} |" in report
    assert (f"- {', '.join(f'{name} (accuracy {share:.4g})' for name in names)}: no better than always answering '财经', "
            f"the commonest training label (accuracy {share:.4g}).") in report
    assert "Warning: one answer to most of the 40 held-out rows: " in report and all(f"{name} '财经" in report for name in names)
    assert f"- Held-out accuracy: all 3 evaluated runs tie (accuracy {share:.4g})" in report and "is also the best" not in report
    assert f"Labels: 11 valid (the training split's answers and the references'), {len(set(references))} of them" in report
