#!/usr/bin/env bash
# The GPU throughput check, one command, for a GPU machine without network access (an H100/H200 with
# PyTorch, transformers, peft, accelerate and triton installed). Runs bench/throughput.py in GPU mode: the
# Qwen2.5-0.5B architecture with random bf16 weights, LoRA r16 on all linear layers, cutoff 2048, batch 20 x
# accumulation 5; padded with LLaMA-Factory's defaults vs padding-free (flex_attention, sdpa_varlen) vs
# packed. Ends within 7.5 minutes and writes gpu.txt, throughput.txt and throughput.json under $OUT
# (./bench_out when $OUT is unset).
#
# Liger's fused linear cross-entropy is used when liger_kernel imports. Without network access on the GPU
# machine, download its wheel beforehand into .whl/ at the repository root (it needs only torch and triton):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl liger-kernel==0.8.5
# and copy the repository, .whl/ included, to the GPU machine: any .whl/*.whl is installed into /tmp/site first.
#
#   bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./bench_out}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PYTHON" - <<'EOF'
import importlib.util, peft, torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
      f"liger_kernel {'yes' if importlib.util.find_spec('liger_kernel') else 'no'}")
EOF
} 2>&1 | tee "$OUT/gpu.txt"

PYTHONUNBUFFERED=1 timeout 450 "$PYTHON" -m bench.throughput --device cuda --json "$OUT/throughput.json" 2>&1 \
    | tee "$OUT/throughput.txt"
