"""Everything a training step needs that depends on the batch comes from the collator, worked out on the CPU:
the step itself never reads a tensor back from the device (a read waits for the GPU to finish the work queued
before it). On a CPU the step's input preparation runs on the meta device, where any read fails; on CUDA a
training step runs under torch.cuda.set_sync_debug_mode("error")."""
from __future__ import annotations

import pytest
import torch
from accelerate.utils import send_to_device
from peft import LoraConfig, get_peft_model
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
from transformers import Qwen2Config, Qwen2ForCausalLM

from sft.model.attention import DocumentMask, document_causal
from sft.recipe.collate import (IGNORE_INDEX, LABEL_POSITIONS_KEY, NEXT_LABELS_KEY, TRAINER_KEYS, PaddedCollator, PaddingFreeCollator,
                         block_causal_mask, label_targets, model_inputs, pack_examples)
from sft.recipe.trainer import count_batch, loss_inputs

LENGTHS = [9, 23, 4, 31, 15, 2]


def make_examples(lengths):
    examples = []
    for index, length in enumerate(lengths):
        ids = [(7 * index + position) % 97 + 1 for position in range(length)]
        prompt = length // 3
        examples.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return examples


def test_label_targets_are_the_next_token_labels_of_each_row():
    labels = torch.tensor([[-100, 5, 6, -100], [-100, -100, -100, 7], [-100, -100, -100, -100]])
    targets = label_targets(labels)
    # row 0 predicts 5 at position 0 and 6 at 1; row 1 predicts 7 at 2; row 2 nothing (padded with position 0, ignored)
    assert targets[LABEL_POSITIONS_KEY].tolist() == [[0, 1], [2, 0], [0, 0]]
    assert targets[NEXT_LABELS_KEY].tolist() == [[5, 6], [7, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX]]


@pytest.mark.parametrize("collator,packed", [
    (PaddedCollator(pad_token_id=0), False),
    (PaddingFreeCollator(), False),
    (PaddingFreeCollator(dense_mask=True), False),
    (PaddingFreeCollator(block_mask=True), False),
    (PaddingFreeCollator(padded_layout=True), False),
    (PaddingFreeCollator(), True),
    (PaddingFreeCollator(dense_mask=True), True),
    (PaddingFreeCollator(block_mask=True), True),
])
def test_the_steps_input_preparation_reads_no_tensor(collator, packed):
    """SFTTrainer's preparation of a step's inputs (count_batch, then loss_inputs for the loss at the label
    positions) runs on a batch moved to the meta device as the Trainer's dataloader moves it (accelerate's
    send_to_device): any read of a tensor's value would fail there."""
    examples = make_examples(LENGTHS)
    batch = collator(pack_examples(examples, cutoff_len=40) if packed else examples)
    on_meta = send_to_device(batch, "meta", non_blocking=True)
    assert count_batch(on_meta) == (len(LENGTHS), sum(LENGTHS))
    inputs = loss_inputs({key: value for key, value in on_meta.items() if key not in TRAINER_KEYS})
    assert inputs["logits_to_keep"].device.type == "meta" and inputs["logits_to_keep"].dtype == torch.long
    assert inputs["shift_labels"].shape == inputs["logits_to_keep"].shape
    assert not set(TRAINER_KEYS) & set(inputs) and LABEL_POSITIONS_KEY not in inputs
    if isinstance(collator, PaddingFreeCollator) and collator.block_mask:
        assert isinstance(inputs["attention_mask"], BlockMask) and inputs["attention_mask"].kv_indices.device.type == "meta"


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("boundaries", [[0, 5, 200, 201, 390, 520], [0, 256], [0, 128, 300]])
def test_document_mask_is_flex_attentions_own_block_mask(boundaries):
    """DocumentMask's tiles equal those create_block_mask finds by evaluating the mask at every pair, and
    flex_attention with it equals sdpa with the dense block-diagonal causal mask."""
    cu_seq_lens = torch.tensor(boundaries, dtype=torch.int32)
    document = DocumentMask(cu_seq_lens)
    mask = document.to("cpu")
    length = boundaries[-1]
    reference = create_block_mask(document_causal(document.document_ids), 1, None, length, length, device="cpu")
    for name in ("kv_num_blocks", "full_kv_num_blocks", "q_num_blocks", "full_q_num_blocks"):
        assert torch.equal(getattr(mask, name), getattr(reference, name)), name
    assert torch.equal(mask.to_dense(), reference.to_dense())
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, 2, length, 8, generator=generator) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=block_causal_mask(cu_seq_lens)[0])
    assert torch.allclose(flex_attention(query, key, value, block_mask=mask), expected, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: a CPU has no host-device sync to detect")
def test_a_padding_free_training_step_never_waits_for_the_gpu(tmp_path):
    """A step of the GPU's default path (padding-free, flex_attention with the collator's BlockMask, bf16,
    fused AdamW) after a warm-up step: torch raises on any synchronising CUDA call inside it."""
    from transformers import TrainingArguments

    from sft.data.stream import StreamSampler
    from sft.recipe.callbacks import SeenCounter
    from sft.recipe.trainer import SFTTrainer

    config = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                         vocab_size=128, use_cache=False, attn_implementation="flex_attention")
    torch.manual_seed(0)
    model = get_peft_model(Qwen2ForCausalLM(config).to("cuda", torch.bfloat16), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], disable_tqdm=True, bf16=True, optim="adamw_torch_fused")
    trainer = SFTTrainer(model=model, args=args, counter=SeenCounter(), stream=StreamSampler(1, 1, 0, False))
    trainer.create_optimizer_and_scheduler(num_training_steps=2)
    from torch.utils.data._utils.pin_memory import pin_memory

    collator = PaddingFreeCollator(block_mask=True)
    model.train()
    for step, lengths in enumerate((LENGTHS, LENGTHS[::-1])):
        batch = collator(make_examples(lengths))
        items = (batch["labels"][..., 1:] != IGNORE_INDEX).sum()
        batch, items = send_to_device((pin_memory(batch), items.pin_memory()), "cuda", non_blocking=True)  # as the Trainer's dataloader
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if step else "default")
        try:
            trainer.training_step(model, batch, items)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.slow
def test_flex_attention_with_the_collators_block_mask_gives_the_padded_loss():
    """The GPU's padding-free path end to end on a CPU: the batch moved as the Trainer's dataloader moves it,
    the tiny Qwen2 with flex_attention (transformers compiles it: tens of seconds on a CPU) and the loss read
    at the collator's label positions, against the padded batch through sdpa."""
    examples = make_examples([*LENGTHS, 140])  # a sample across a 128-token tile
    config = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
              "vocab_size": 128, "use_cache": False}
    torch.manual_seed(0)
    padded_model = Qwen2ForCausalLM(Qwen2Config(**config, attn_implementation="sdpa")).eval()
    flex_model = Qwen2ForCausalLM(Qwen2Config(**config, attn_implementation="flex_attention")).eval()
    flex_model.load_state_dict(padded_model.state_dict())
    batch = send_to_device(PaddingFreeCollator(block_mask=True)(examples), "cpu", non_blocking=True)
    assert isinstance(batch["attention_mask"], BlockMask)
    with torch.no_grad():
        expected = padded_model(**model_inputs(PaddedCollator(pad_token_id=0)(examples))).loss
        loss = flex_model(**loss_inputs({key: value for key, value in batch.items() if key not in TRAINER_KEYS})).loss
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


@pytest.mark.parametrize("on_cuda,expected", [(True, "adamw_torch_fused"), (False, "adamw_torch")])
def test_adamw_runs_fused_on_cuda(monkeypatch, on_cuda, expected):
    import sft.recipe.train

    monkeypatch.setattr(sft.recipe.train, "_cuda", lambda: on_cuda)
    assert sft.recipe.train.optimizer_name("adamw_torch") == expected
    assert sft.recipe.train.optimizer_name("sgd") == "sgd"
