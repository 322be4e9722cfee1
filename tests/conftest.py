"""Shared fixtures: one cache dir per test session, so the tiny model and the Qwen2.5 tokenizer are
built once, and the tokenized demo data is reused across end-to-end runs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def qwen_tokenizer(cache_dir):
    from transformers import AutoTokenizer

    from sft.qwen_vocab import ensure_qwen2_tokenizer

    return AutoTokenizer.from_pretrained(ensure_qwen2_tokenizer(cache_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(cache_dir):
    from sft.tiny_model import ensure_tiny_model

    return ensure_tiny_model(cache_dir)


def run_train(args, project_root, cache_dir, check=True, timeout=600, extra_env=None):
    """`python train.py ARGS` in a subprocess, with outputs under project_root and a shared cache."""
    env = {**os.environ, "PROJECT_ROOT": str(project_root), "LORASWEEP_CACHE": str(cache_dir),
           "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", **(extra_env or {})}
    env.pop("WANDB_API_KEY", None)
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"train.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result
