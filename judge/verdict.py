"""What the metrics table does not say by itself: whether an adapter beats always answering the
commonest training label (label tasks), and whether a model gave one answer to most rows, in which case
its scores measure that one answer rather than the task."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from judge.judging import ModelResult
from judge.metrics import PRIMARY

SAME_ANSWER_SHARE = 0.5  # one answer string on more than this share of the rows draws a warning
SHOWN_ANSWER_CHARS = 40


def floor_lines(adapters: Sequence[ModelResult], majority: ModelResult | None, metric: str) -> list[str]:
    """The adapters that do not beat always answering the commonest training label, in one line."""
    if majority is None:
        return []
    primary, _ = PRIMARY[metric]
    floor, label = majority.metrics[primary], majority.metrics["answer"]
    below = [f"{result.name} ({primary} {result.metrics[primary]:.4g})" for result in adapters
             if result.metrics.get(primary) is not None and result.metrics[primary] <= floor]
    if not below:
        return []
    return [f"{', '.join(below)}: no better than always answering {label!r}, the commonest training label "
            f"({primary} {floor:.4g})."]


def same_answer_lines(results: Sequence[ModelResult], references: Sequence[str]) -> list[str]:
    """A warning naming the models whose commonest answer covers most rows, and more rows than any one
    reference does (so a held-out set dominated by one label does not draw it for a right model)."""
    if not references:
        return []
    rows, commonest_reference = len(references), Counter(references).most_common(1)[0][1]
    repeated = []
    for result in results:
        answer, count = Counter(result.answers).most_common(1)[0]
        if count > SAME_ANSWER_SHARE * rows and count > commonest_reference:
            shown = answer if len(answer) <= SHOWN_ANSWER_CHARS else answer[:SHOWN_ANSWER_CHARS] + "..."
            repeated.append(f"{result.name} {shown!r} on {count}")
    if not repeated:
        return []
    return [f"Warning: one answer to most of the {rows} held-out rows: {'; '.join(repeated)}. "
            "Their scores measure that one answer, not the task."]


def label_set_lines(training_answers: Counter[str], references: Sequence[str], results: Sequence[ModelResult]) -> list[str]:
    """Which labels a label task was scored on: the valid ones, and those macro-F1 averaged over."""
    if not training_answers:
        return []
    referenced = set(references)
    line = (f"Labels: {len(set(training_answers) | referenced)} valid (the training split's answers and the references'), "
            f"{len(referenced)} of them in the held-out references; macro-F1 averages over those")
    predicted = [f"{result.name}: {', '.join(result.metrics['predicted_unreferenced'])}"
                 for result in results if result.metrics.get("predicted_unreferenced")]
    if predicted:
        line += f" and the labels predicted that no reference has ({'; '.join(predicted)})"
    return [line + "."]
