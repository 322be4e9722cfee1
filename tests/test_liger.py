"""Liger's fused linear cross-entropy: on in training on a CUDA GPU with liger-kernel installed, and only its
fused loss; a CPU run never asks for it (its Triton kernels take CUDA tensors only), installed or not."""
import pytest
import transformers.utils
from conftest import compose_train

import sft.recipe.train
from sft.recipe.batching import MicroBatches
from sft.recipe.train import LIGER_KERNEL_CONFIG, liger_arguments, training_arguments


@pytest.mark.parametrize(("cuda", "installed"), [(False, False), (False, True), (True, False)])
def test_no_liger_without_both_a_gpu_and_liger_kernel(monkeypatch, tmp_path, cuda, installed):
    monkeypatch.setattr(sft.recipe.train, "_cuda", lambda: cuda)
    monkeypatch.setattr(transformers.utils, "is_liger_kernel_available", lambda: installed)
    assert liger_arguments("fp32") == {}
    if not cuda:
        args = training_arguments(compose_train(["model=tiny"]), tmp_path, "fp32", max_steps=1, step_passes=MicroBatches(4, 1), has_eval=False)
        assert args.use_liger_kernel is False


def test_a_gpu_with_liger_kernel_gets_its_fused_linear_cross_entropy_only(monkeypatch):
    monkeypatch.setattr(sft.recipe.train, "_cuda", lambda: True)
    monkeypatch.setattr(transformers.utils, "is_liger_kernel_available", lambda: True)
    assert liger_arguments("bf16") == {"use_liger_kernel": True, "liger_kernel_config": LIGER_KERNEL_CONFIG}
    assert [name for name, on in LIGER_KERNEL_CONFIG.items() if on] == ["fused_linear_cross_entropy"]
