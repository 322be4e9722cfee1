"""Padding-free batches and packed rows must give the padded path's loss and each sample's own logits,
on a tiny randomly initialised Qwen2 (CPU)."""
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

from sft.model.attention import SDPA_VARLEN, padding_free_attention
from sft.model.lora_dropout import PaddedLayoutDropout, use_padded_layout_dropout
from sft.recipe.collate import (IGNORE_INDEX, PADDED_LAYOUT_KEY, SAMPLE_COUNT_KEY, TOKEN_COUNT_KEY, TRAINER_KEYS, PaddedCollator, PaddingFreeCollator,
                          model_inputs, pack_examples)

VOCAB = 1000
PAD = 0
LENGTHS = [9, 23, 4, 31, 15, 2]
# (attn_implementation, dense_mask): the three exact padding-free setups on CPU
PADDING_FREE_SETUPS = [(SDPA_VARLEN, False), ("sdpa", True), ("sdpa", False)]


def make_examples(lengths: list[int], seed: int = 0) -> list[dict[str, list[int]]]:
    """Random samples whose first third is prompt (-100), like tokenized chat rows."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for length in lengths:
        input_ids = torch.randint(1, VOCAB, (length,), generator=generator).tolist()
        prompt = max(1, length // 3)
        examples.append({"input_ids": input_ids, "labels": [IGNORE_INDEX] * prompt + input_ids[prompt:]})
    return examples


def tiny_qwen2(attn_implementation: str) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
        vocab_size=VOCAB, max_position_embeddings=256, attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).eval()


def logits_alone(model: Qwen2ForCausalLM, examples: list[dict[str, list[int]]]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(input_ids=torch.tensor([example["input_ids"]])).logits[0] for example in examples])


def test_padded_collator_pads_right_to_a_multiple():
    batch = PaddedCollator(pad_token_id=PAD, pad_to_multiple_of=8)(make_examples([3, 10]))
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"].sum(dim=1).tolist() == [3, 10]
    assert (batch["input_ids"][0, 3:] == PAD).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


@pytest.mark.parametrize("attn_implementation,dense_mask", PADDING_FREE_SETUPS)
def test_padding_free_loss_and_logits_match_padded_and_alone(attn_implementation, dense_mask):
    model = tiny_qwen2(attn_implementation)
    examples = make_examples(LENGTHS)
    batch = PaddingFreeCollator(dense_mask=dense_mask)(examples)
    assert batch["input_ids"].shape == (1, sum(LENGTHS))
    assert batch[SAMPLE_COUNT_KEY] == len(LENGTHS)
    with torch.no_grad():
        padded_loss = model(**model_inputs(PaddedCollator(pad_token_id=PAD)(examples))).loss
        output = model(**model_inputs(batch))
    assert output.loss.item() == pytest.approx(padded_loss.item(), abs=1e-5)
    assert torch.allclose(output.logits[0], logits_alone(model, examples), atol=1e-5)


def test_padding_free_batch_restarts_positions_and_masks_each_first_label():
    examples = make_examples([5, 3, 4])
    examples[1]["labels"] = list(examples[1]["input_ids"])  # a sample with no prompt: its first label must still go
    batch = PaddingFreeCollator()(examples)
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]
    assert batch["cu_seq_lens_q"].tolist() == [0, 5, 8, 12]
    assert batch["labels"][0, [0, 5, 8]].tolist() == [IGNORE_INDEX] * 3
    assert batch["labels"][0, 6:8].tolist() == examples[1]["labels"][1:]


def test_dense_mask_is_block_diagonal_causal():
    mask = PaddingFreeCollator(dense_mask=True)(make_examples([2, 3]))["attention_mask"]
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.bool
    )
    assert mask.dtype == torch.bool and torch.equal(mask[0, 0], expected)


def test_pack_examples_fills_rows_deterministically_within_cutoff():
    examples = make_examples(LENGTHS)
    rows = pack_examples(examples, cutoff_len=32)
    assert rows == pack_examples(examples, cutoff_len=32)
    assert all(len(row["input_ids"]) <= 32 for row in rows)
    assert sorted(length for row in rows for length in row["sequence_lengths"]) == sorted(LENGTHS)
    # longest first, each into the fullest row it fits: 31 | 23, then 9 into the 23-row | 15, 4, 2
    assert [row["sequence_lengths"] for row in rows] == [[31], [23, 9], [15, 4, 2]]


@pytest.mark.parametrize("attn_implementation,dense_mask", PADDING_FREE_SETUPS)
def test_packed_rows_do_not_attend_across_samples(attn_implementation, dense_mask):
    model = tiny_qwen2(attn_implementation)
    examples = make_examples(LENGTHS, seed=1)
    rows = pack_examples(examples, cutoff_len=32)
    batch = PaddingFreeCollator(dense_mask=dense_mask)(rows)
    assert batch[SAMPLE_COUNT_KEY] == len(examples)
    packed_order = [examples[index] for index in packing_order(examples, rows)]
    with torch.no_grad():
        logits = model(**model_inputs(batch)).logits[0]
    assert torch.allclose(logits, logits_alone(model, packed_order), atol=1e-5)


def packing_order(examples, rows):
    """Index of each sample, in the order the packed rows hold them (samples here are all distinct)."""
    by_tokens = {tuple(example["input_ids"]): index for index, example in enumerate(examples)}
    order = []
    for row in rows:
        start = 0
        for length in row["sequence_lengths"]:
            order.append(by_tokens[tuple(row["input_ids"][start : start + length])])
            start += length
    return order


def test_padding_free_lora_forward_backward_matches_padded_gradients():
    examples = make_examples(LENGTHS)
    gradients = []
    for collator in (PaddedCollator(pad_token_id=PAD), PaddingFreeCollator()):
        lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
        model = get_peft_model(tiny_qwen2(SDPA_VARLEN), lora)
        model.train()
        model(**model_inputs(collator(examples))).loss.backward()
        gradients.append({name: param.grad for name, param in model.named_parameters() if param.requires_grad})
    padded, padding_free = gradients
    assert padded.keys() == padding_free.keys() and len(padded) > 0
    for name in padded:
        assert torch.allclose(padding_free[name], padded[name], atol=1e-5), name


@pytest.mark.parametrize("collator", [PaddedCollator(pad_token_id=PAD), PaddingFreeCollator()])
def test_trainer_loss_on_label_logits_only_matches_the_full_loss_and_gradients(tmp_path, collator):
    """SFTTrainer projects to the vocabulary at label positions only; the loss and every LoRA gradient
    must be those of the model's own loss over all logits. Before transformers 5.21 (no boolean logits_to_keep
    mask) it projects every position, and the comparison is of the full loss with itself."""
    from transformers import TrainingArguments

    from sft.data.stream import StreamSampler
    from sft.recipe.callbacks import SeenCounter
    from sft.recipe.trainer import SFTTrainer, slices_logits_per_row

    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(tiny_qwen2(SDPA_VARLEN), lora).train()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, counter=SeenCounter(), stream=StreamSampler(1, 1, 0, False))
    assert trainer.logits_at_labels_only == slices_logits_per_row()
    batch = {key: value for key, value in collator(make_examples(LENGTHS)).items() if key not in TRAINER_KEYS}
    items = int((batch["labels"][..., 1:] != IGNORE_INDEX).sum())
    losses, gradients = [], []
    for label_logits_only in (False, slices_logits_per_row()):
        trainer.logits_at_labels_only = label_logits_only
        model.zero_grad()
        loss = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(items))
        loss.backward()
        losses.append(loss.item())
        gradients.append({name: param.grad.clone() for name, param in model.named_parameters() if param.requires_grad})
    assert losses[1] == pytest.approx(losses[0], abs=1e-6)
    for name in gradients[0]:
        assert torch.allclose(gradients[1][name], gradients[0][name], atol=1e-6), name


def tensor_token_count(batch) -> int:
    """count_batch's former count, read from the batch's tensors: the 2-D attention mask's sum, or every
    input id of a padding-free row (whose mask, if any, is the [1, 1, T, T] block mask)."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None and mask.dim() == 2 else batch["input_ids"].numel()


@pytest.mark.parametrize("collator,packed", [
    (PaddedCollator(pad_token_id=PAD), False),
    (PaddedCollator(pad_token_id=PAD, pad_to_multiple_of=None), False),
    (PaddingFreeCollator(), False),
    (PaddingFreeCollator(dense_mask=True), False),
    (PaddingFreeCollator(padded_layout=True), False),
    (PaddingFreeCollator(), True),
    (PaddingFreeCollator(dense_mask=True), True),
])
def test_count_batch_reads_the_collators_counts_which_equal_the_tensor_counts(collator, packed):
    """The ints each collator puts in its batch are the samples and non-pad tokens that count_batch used to
    read from the tensors; count_batch reads no tensor (here on the meta device, where a read would fail)."""
    from sft.recipe.trainer import count_batch

    examples = make_examples(LENGTHS)
    batch = collator(pack_examples(examples, cutoff_len=32) if packed else examples)
    assert (batch[SAMPLE_COUNT_KEY], batch[TOKEN_COUNT_KEY]) == (len(LENGTHS), tensor_token_count(batch)) == (len(LENGTHS), sum(LENGTHS))
    on_meta = {key: value.to("meta") if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
    assert count_batch(on_meta) == (len(LENGTHS), sum(LENGTHS))


def test_padded_layout_places_each_token_where_the_padded_batch_has_it():
    examples = make_examples([3, 10, 1])
    layout = PaddingFreeCollator(padded_layout=True)(examples)[PADDED_LAYOUT_KEY]
    padded = PaddedCollator(pad_token_id=PAD)(examples)
    assert layout.positions == padded["input_ids"].numel() == 3 * 16
    real_positions = padded["attention_mask"].flatten().nonzero().flatten()
    assert torch.equal(layout.token_index, real_positions)


def test_padded_layout_is_worked_out_only_when_read():
    """Evaluation batches carry a layout too (one collator for training and evaluation); with no dropout
    there nothing reads it, and nothing but the lengths is made."""
    layout = PaddingFreeCollator(padded_layout=True)(make_examples([3, 10, 1]))[PADDED_LAYOUT_KEY]
    assert vars(layout) == {"lengths": (3, 10, 1)}
    assert layout.token_index is layout.token_index and "token_index" in vars(layout)


def lora_dropout_trainer(tmp_path, padding_free: bool):
    """SFTTrainer on a tiny Qwen2 with LoRA dropout 0.1 (the same initial weights every call), set up as
    sft.recipe.train builds it: padding-free batches carry the padded layout, which the swapped-in dropout reads."""
    from transformers import TrainingArguments

    from sft.data.stream import StreamSampler
    from sft.recipe.callbacks import SeenCounter
    from sft.recipe.trainer import SFTTrainer

    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(tiny_qwen2(SDPA_VARLEN), lora).train()
    slot = use_padded_layout_dropout(model) if padding_free else None
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, counter=SeenCounter(), stream=StreamSampler(1, 1, 0, False), layout_slot=slot)
    collator = PaddingFreeCollator(padded_layout=True) if padding_free else PaddedCollator(pad_token_id=PAD)
    return trainer, collator


def test_padding_free_lora_dropout_trains_the_padded_path_step_for_step(tmp_path):
    """With LoRA dropout, padding-free batches draw the padded batch's masks (sft.model.lora_dropout): the same
    loss and LoRA gradients at every step, and the generator left where the padded path leaves it."""
    runs = []
    for padding_free in (False, True):
        trainer, collator = lora_dropout_trainer(tmp_path, padding_free)
        optimizer = torch.optim.SGD([p for p in trainer.model.parameters() if p.requires_grad], lr=0.5)
        torch.manual_seed(42)
        steps = []
        for step in range(3):
            batch = collator(make_examples(LENGTHS, seed=step))
            items = torch.tensor(int((batch["labels"][..., 1:] != IGNORE_INDEX).sum()))
            loss = trainer.training_step(trainer.model, batch, num_items_in_batch=items)
            gradients = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
            steps.append((loss.item(), gradients, torch.get_rng_state()))
            optimizer.step()
            optimizer.zero_grad()
        runs.append(steps)
    assert sum(isinstance(m, PaddedLayoutDropout) for m in trainer.model.modules()) == 2 * 7  # every LoRA layer's dropout
    for (padded_loss, padded_gradients, padded_rng), (loss, gradients, rng) in zip(*runs):
        assert loss == pytest.approx(padded_loss, abs=1e-6)
        for name in padded_gradients:
            assert torch.allclose(gradients[name], padded_gradients[name], atol=1e-6), name
        assert torch.equal(rng, padded_rng)


@pytest.mark.parametrize("collator", [PaddedCollator(pad_token_id=PAD), PaddingFreeCollator()])
def test_empty_batch_is_refused(collator):
    with pytest.raises(ValueError, match="empty batch"):
        collator([])


def test_sample_longer_than_cutoff_is_refused():
    with pytest.raises(ValueError, match="more than cutoff_len=8"):
        pack_examples(make_examples([5, 9]), cutoff_len=8)


def test_mismatched_labels_are_refused():
    example = make_examples([5])[0]
    example["labels"] = example["labels"][1:]
    with pytest.raises(ValueError, match="5 input_ids but 4 labels"):
        PaddingFreeCollator()([example])


def test_padded_collator_refuses_packed_rows():
    with pytest.raises(ValueError, match="need PaddingFreeCollator"):
        PaddedCollator(pad_token_id=PAD)(pack_examples(make_examples([3, 4]), cutoff_len=16))


def test_padding_free_attention_choice():
    assert padding_free_attention("auto", device="cpu") == SDPA_VARLEN
    assert padding_free_attention("sdpa") == "sdpa"
    with pytest.raises(ValueError, match="unknown padding-free attention 'flash'"):
        padding_free_attention("flash")
