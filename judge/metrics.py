"""Held-out metrics from generated answers, chosen per task by `task.metric`.

- label (classification, cate): accuracy and macro-F1 of the generated label against the reference,
  the labels being the training split's answers; always answering the commonest one is the floor.
- triples (extraction, spo): precision / recall / F1 of the generated (subject, predicate, object) set.
- text (free text, yiliao and demo): ROUGE-L over characters, a rough signal beside the eval loss.

An answer that cannot be parsed counts as wrong and is counted under `unparseable`; nothing here raises
on model output. Pure Python, no torch.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

METRICS = ("label", "triples", "text")
# the figure that decides which adapter is best on held-out data, and which way is better
PRIMARY: dict[str, tuple[str, str]] = {
    "label": ("accuracy", "maximize"),
    "triples": ("f1", "maximize"),
    "text": ("eval_loss", "minimize"),
}
LABEL_STRIP = " \t\r\n。.,，:：;；!！?？\"'“”‘’`*"
TRIPLE_FIELDS = ("subject", "predicate", "object")
JSON_LIST = re.compile(r"\[.*\]", re.DOTALL)

Triple = tuple[str, str, str]


def parse_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label an answer names: the whole answer (punctuation stripped) when it is a label, else the
    one label it contains; None when it names none or several."""
    text = answer.strip(LABEL_STRIP)
    if text in labels:
        return text
    found = [label for label in labels if label in text]
    return found[0] if len(found) == 1 else None


def classification(answers: Sequence[str], references: Sequence[str], labels: Sequence[str] = ()) -> dict[str, Any]:
    """Accuracy and macro-F1 of the label each answer names.

    The valid labels are the task's `labels` (the training split's answers) and the references': a
    valid label that no held-out row has is still a label, not an unparseable answer. Macro-F1 averages
    over the labels the references use plus the valid labels the answers predict (listed under
    `predicted_unreferenced`), so predicting a label absent from the references costs F1 as it should.
    An answer naming no valid label (or several) is unparseable and wrong.
    """
    valid = sorted(set(labels) | set(references))
    predicted = [parse_label(answer, valid) for answer in answers]
    unreferenced = sorted(set(predicted) - set(references) - {None})
    counted = sorted(set(references)) + unreferenced
    correct = sum(p == r for p, r in zip(predicted, references))
    scores = []
    for label in counted:
        true_positive = sum(p == label and r == label for p, r in zip(predicted, references))
        predicted_count = sum(p == label for p in predicted)
        reference_count = sum(r == label for r in references)
        scores.append(f1(true_positive, predicted_count, reference_count))
    return {
        "accuracy": correct / len(references) if references else None,
        "macro_f1": sum(scores) / len(scores) if scores else None,
        "unparseable": sum(p is None for p in predicted),
        "predicted_unreferenced": unreferenced,
    }


def parse_triples(answer: str) -> set[Triple] | None:
    """The (subject, predicate, object) set of a JSON list answer (the first [...] span when there is
    text around it); None when it is not such a list."""
    match = JSON_LIST.search(answer)
    if match is None:
        return None
    try:
        items = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return None
    triples = set()
    for item in items:
        values = [item.get(key) for key in TRIPLE_FIELDS]
        if not all(isinstance(value, str) for value in values):
            return None
        triples.add((values[0].strip(), values[1].strip(), values[2].strip()))
    return triples


def triples(answers: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Micro precision / recall / F1 of generated triples against the references' triples."""
    predicted = [parse_triples(answer) for answer in answers]
    expected = [parse_triples(reference) for reference in references]
    true_positive = sum(len((p or set()) & (e or set())) for p, e in zip(predicted, expected))
    predicted_count = sum(len(p or ()) for p in predicted)
    reference_count = sum(len(e or ()) for e in expected)
    return {
        "precision": true_positive / predicted_count if predicted_count else 0.0,
        "recall": true_positive / reference_count if reference_count else 0.0,
        "f1": f1(true_positive, predicted_count, reference_count),
        "unparseable": sum(p is None for p in predicted),
        "unparseable_references": sum(e is None for e in expected),
    }


def rouge_l_chars(answer: str, reference: str) -> float:
    """ROUGE-L F1 over characters (no word segmentation needed for Chinese): the longest common
    subsequence against both lengths."""
    if not answer or not reference:
        return 0.0
    previous = [0] * (len(reference) + 1)
    for char in answer:
        current = [0]
        for index, other in enumerate(reference):
            current.append(previous[index] + 1 if char == other else max(previous[index + 1], current[index]))
        previous = current
    common = previous[-1]
    return f1(common, len(answer), len(reference))


def text(answers: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Mean character ROUGE-L: a rough signal of overlap with the reference, not of correctness."""
    scores = [rouge_l_chars(answer, reference) for answer, reference in zip(answers, references)]
    return {"rouge_l_chars": sum(scores) / len(scores) if scores else None}


def f1(true_positive: int, predicted: int, expected: int) -> float:
    return 2 * true_positive / (predicted + expected) if predicted + expected else 0.0


SCORERS: dict[str, Callable[[Sequence[str], Sequence[str]], dict[str, Any]]] = {
    "label": classification,
    "triples": triples,
    "text": text,
}


def score(metric: str, answers: Sequence[str], references: Sequence[str], labels: Sequence[str] = ()) -> dict[str, Any]:
    """The metric's scores of the answers; `labels` (the task's label set) is read by `label` only."""
    if metric == "label":
        return classification(answers, references, labels)
    return SCORERS[metric](answers, references)


def perplexity(eval_loss: float) -> float:
    """exp of the token-weighted mean loss; inf instead of an overflow for a hopeless model."""
    return math.exp(eval_loss) if eval_loss < 700 else math.inf
