#!/usr/bin/env bash
# The GPU throughput check, one command, for a GPU machine without network access (an H100/H200 with PyTorch,
# transformers, peft, accelerate and triton installed). Runs bench/throughput.py in GPU mode, which times the
# trainer train.py builds: the Qwen2.5-0.5B architecture with random bf16 weights, LoRA r16 alpha16 dropout
# 0.01 on all linear layers, cutoff 2048, batch 20 x accumulation 5 on a yiliao-shaped generated set, one table
# with every row measured in this run and printed as it ends: padded with LLaMA-Factory's gradient checkpointing,
# padding-free (flex_attention) with the micro-batches apart, merged, merged with the decoder layers compiled,
# and packed; samples/s, real tokens/s, MFU, peak memory and "436k rows x 1 epoch: N min"; Liger's fused linear
# cross-entropy when liger_kernel imports. Then k trials at once on the GPU (bench.trials_per_gpu: k = 1, 2, 4, 8,
# each row as it ends). Ends within 7.5 minutes (GPU_CHECK_TIMEOUT seconds for the table, GPU_CHECK_K_TIMEOUT for
# the k rows) and writes gpu.txt, throughput.txt, throughput.json and trials_per_gpu.txt under $OUT (./bench_out
# when $OUT is unset); the compiled kernels are cached
# under $LORASWEEP_CACHE/compile (.cache/compile when it is unset), so a second run skips compiling.
#
# The trainer needs the project's other dependencies (hydra-core, omegaconf, datasets, rich, matplotlib,
# tiktoken, filelock), and the tiny model's tokenizer, built once from jieba's dictionary: either jieba, or a
# cache dir that holds the built tiny model (LORASWEEP_CACHE=DIR with DIR/models/<TINY_MODEL_NAME of
# sft/model/tiny_model.py> copied from a machine that built it). Without network access on the GPU machine, put their wheels for its Python
# into .whl/ at the repository root beforehand and copy the repository, .whl/ included; any .whl/*.whl is
# installed into /tmp/site-packages first, without dependencies (a folder named site-packages: dill, which
# datasets fingerprints with, pickles modules from anywhere else by value, and that fails on pyarrow's). For example, for Python 3.12 on x86_64:
#   python3 -m pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl \
#       liger-kernel==0.8.5 hydra-core==1.3.8 omegaconf==2.3.1 PyYAML datasets pyarrow dill multiprocess xxhash \
#       fsspec rich markdown-it-py mdurl pygments matplotlib contourpy cycler fonttools kiwisolver pyparsing \
#       pillow tiktoken regex filelock tqdm pandas tzdata
#   python3 -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3   # source only on the index; pure Python
# Training projects the vocabulary at the label positions only with transformers 5.21 or newer (older releases
# compute every logit, and the figures then measure that): where the machine has an older one, bring
# transformers==5.25.0 (and its huggingface-hub, tokenizers and safetensors) in .whl/ too.
#
#   bash bench/gpu_check.sh                                      # every mode
#   bash bench/gpu_check.sh --modes padding-free --profile      # arguments go to bench.throughput
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./bench_out}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-packages .whl/*.whl
    export PYTHONPATH="/tmp/site-packages${PYTHONPATH:+:$PYTHONPATH}"
fi

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PYTHON" - <<'EOF'
import importlib.util, peft, torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
      f"liger_kernel {'yes' if importlib.util.find_spec('liger_kernel') else 'no'}")
missing = [name for name in ("hydra", "omegaconf", "datasets", "rich", "matplotlib", "filelock")
           if importlib.util.find_spec(name) is None]
if missing:
    raise SystemExit(f"missing on this machine: {', '.join(missing)}; bring their wheels in .whl/ (see the top of bench/gpu_check.sh)")
EOF
} 2>&1 | tee "$OUT/gpu.txt"

PYTHONUNBUFFERED=1 timeout "${GPU_CHECK_TIMEOUT:-330}" "$PYTHON" -m bench.throughput --device cuda --json "$OUT/throughput.json" "$@" 2>&1 \
    | tee "$OUT/throughput.txt" || true
# k trials at once on the one GPU (hydra.sweeper.trials_per_gpu): aggregate trial-samples/s, k = 1, 2, 4, 8
PYTHONUNBUFFERED=1 timeout "${GPU_CHECK_K_TIMEOUT:-120}" "$PYTHON" -m bench.trials_per_gpu 2>&1 | tee "$OUT/trials_per_gpu.txt"
