#!/usr/bin/env bash
# The scaling study on a lent GPU machine, in one call: rebuild the shapes2k feature cache from a pack (the full
# cache is too large to ship), then train every scale, its extra seeds and its leave-one-style-out runs at once
# (a 2M-parameter model leaves an H100 mostly idle), then evaluate and time them one by one.
#
#   here:  python scripts/feature_pack.py pack --features data/shapes2k/features/encoder-shapes2k \
#              --image-encoder runs/precision-repo/image_encoder/1/model.onnx --out .carry/shapes2k
#   there: OUT=/some/dir bash benchmarks/device_scaling.sh [scaling_study.py flags to replace the defaults]
#
# Results (scaling.md/json/png, logs, every run's run.json and curves) land in $OUT.
set -euo pipefail
OUT=${OUT:-runs/device-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/trainer:$PWD/exporter:$PWD/server:$PWD/benchmarks PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PYTHON:-python3}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  $PY -c "import sys, torch, onnxruntime as ort; print(sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0), 'ort', ort.__version__, ort.get_available_providers())"
  $PY -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>&1 | tail -1 || true
} 2>&1 | tee "$OUT/machine.log"

$PY scripts/feature_pack.py unpack --pack .carry/shapes2k --data data/shapes2k 2>&1 | tee "$OUT/unpack.log"

if [ $# -eq 0 ]; then
  # Same recipe as the CPU runs for small (1,200 steps, lr 5e-4, warmup 120, val every 120); base and large get
  # what fits a ~4.5-minute window shared by 8 runs. Time limits bound the wall time whatever the GPU's speed.
  set -- --scales small base large \
    --steps small=1200 base=2400 large=2400 --lr small=5e-4 base=3e-4 large=1e-4 \
    --loso-steps small=1200 base=600 large=300 --seeds small=3 \
    --time-limit small=240 base=240 large=260 --loso-time-limit small=30 base=30 large=30 \
    --parallel 8
fi
status=0
$PY benchmarks/scaling_study.py --data data/shapes2k --runs runs/scaling-gpu --out-dir "$OUT" "$@" \
  2>&1 | tee "$OUT/scaling.log" || status=$?

# Everything small enough to bring back: logs, manifests, metrics and plots of every run.
find runs/scaling-gpu \( -name '*.log' -o -name 'run.json' -o -name 'metrics.*' -o -name 'loso.*' -o -name '*.png' \) \
  -print0 | tar czf "$OUT/runs.tgz" --null -T - || true
ls -la "$OUT"
exit $status
