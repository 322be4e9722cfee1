"""LLaMA-Factory's truncation and masking rules (docs/parity.md rules 3-4), on hand-made token ids."""
import pytest

from sft.data.template import IGNORE_INDEX, build_supervised_examples, get_template, infer_seqlen, turn_elements
from sft.lifecycle.errors import ConfigError

M = IGNORE_INDEX


def build_supervised_example(turns: list[list[int]], cutoff_len: int) -> tuple[list[int], list[int], bool]:
    """One row through the batch builder: its input_ids, labels and whether it was cut."""
    batch = build_supervised_examples([turns], cutoff_len)
    return batch.input_ids.tolist(), batch.labels.tolist(), batch.truncated[0]


@pytest.mark.parametrize(
    ("source", "target", "cutoff", "expected"),
    [
        # 2T < C: the answer keeps everything, the prompt gets the rest: max_T = 8, T = 3, S = min(8-3, 10) = 5
        (10, 3, 8, (5, 3)),
        # 2T >= C but 2S < C: the prompt is whole, the answer gets the rest: max_T = 10-3 = 7, S = 3
        (3, 20, 10, (3, 7)),
        # both long: split by share: max_T = int(10 * 12/(8+12)) = 6, S = min(10-6, 8) = 4
        (8, 12, 10, (4, 6)),
        # everything fits
        (3, 2, 10, (3, 2)),
    ],
)
def test_infer_seqlen_branches(source, target, cutoff, expected):
    assert infer_seqlen(source, target, cutoff) == expected


def test_prompt_masked_answer_trained_and_history_trained():
    turns = [[1, 2, 3], [4, 5], [6, 7], [8, 9]]
    input_ids, labels, truncated = build_supervised_example(turns, cutoff_len=100)
    assert input_ids == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert labels == [M, M, M, 4, 5, M, M, 8, 9]
    assert truncated is False


def test_cut_keeps_the_start_of_each_part_and_an_answer_loses_its_end():
    # source 6, target 6, cutoff 8: both long -> max_T = int(8 * 6/12) = 4, S = 4
    turns = [[1, 2, 3, 4, 5, 6], [11, 12, 13, 14, 15, 16]]
    input_ids, labels, truncated = build_supervised_example(turns, cutoff_len=8)
    assert input_ids == [1, 2, 3, 4, 11, 12, 13, 14]
    assert labels == [M, M, M, M, 11, 12, 13, 14]
    assert truncated is True


def test_the_final_turn_is_dropped_first_when_the_budget_runs_out():
    turns = [[1, 2], [3, 4], [5, 6], [7, 8]]
    input_ids, labels, truncated = build_supervised_example(turns, cutoff_len=4)
    assert input_ids == [1, 2, 3, 4]
    assert labels == [M, M, 3, 4]
    assert truncated is True


def test_a_long_prompt_can_leave_no_trainable_label():
    # target 2 -> 2T < C: max_T = 3, T = 2, S = 1: the prompt start survives, the answer too;
    # with cutoff 1: 2T=4 >= 1, 2S=20 >= 1 -> max_T = int(1 * 2/12) = 0, S = 1: no label at all
    input_ids, labels, _ = build_supervised_example([[1] * 10, [5, 6]], cutoff_len=1)
    assert input_ids == [1]
    assert all(label == M for label in labels)


def test_default_system_replaces_missing_or_empty_system():
    template = get_template("qwen")
    for system in (None, ""):
        elements = turn_elements(template, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], system)
        assert elements[0][0] == f"<|im_start|>system\n{template.default_system}<|im_end|>\n"
    elements = turn_elements(template, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "S")
    assert elements == [
        ["<|im_start|>system\nS<|im_end|>\n", "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"],
        ["a<|im_end|>\n"],
    ]


def test_literal_idx_placeholder_in_user_text_becomes_the_turn_index():
    template = get_template("qwen")
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "turn {{idx}}"}, {"role": "assistant", "content": "c"}]
    assert turn_elements(template, messages, "S")[2] == ["<|im_start|>user\nturn 1<|im_end|>\n<|im_start|>assistant\n"]


def test_unknown_template_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown template 'llama9'.*qwen"):
        get_template("llama9")


def test_a_batch_gives_each_row_what_it_gives_alone_and_a_row_without_messages_is_empty():
    rows = [[[1, 2, 3], [4, 5]], [], [[1] * 10, [5, 6]], [[1, 2], [3, 4], [5, 6], [7, 8]]]
    batch = build_supervised_examples(rows, cutoff_len=4)
    assert batch.offsets.tolist() == [0, 4, 4, 8, 12]
    for index, turns in enumerate(rows):
        start, end = batch.offsets[index], batch.offsets[index + 1]
        alone = build_supervised_examples([turns], cutoff_len=4)
        assert batch.input_ids[start:end].tolist() == alone.input_ids.tolist()
        assert batch.labels[start:end].tolist() == alone.labels.tolist()
    assert batch.truncated == [True, False, True, True]
    assert batch.has_labels == [True, False, False, True]
    assert batch.input_ids.dtype == batch.labels.dtype == "int32"
