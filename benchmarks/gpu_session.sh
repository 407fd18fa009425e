#!/bin/bash
# Everything this project measures on a GPU, in one run that ends within a time budget
# (a lent GPU machine is short-lived).  Usage, from the repository root on the GPU machine:
#
#   OUT=results/ BUDGET=560 [STOCK_MAX=1000] bash benchmarks/gpu_session.sh [TRAIN_DATA_DIR]
#
# 1. benchmarks/gpu_check.py: parity on the GPU, the interpolation swap, 10,000 servers per batch size;
# 2. benchmarks/bench_inference.py at 1,000 and 10,000 servers, ours and the stock path (the
#    10,000-server stock path once);
# 3. an end-to-end CUDA training run on the demo data (a few batches: does `tft-top train
#    --device cuda` write a model directory that loads?), then `tft-top predict --device cuda`
#    with that model and with the shipped one;
# 4. with TRAIN_DATA_DIR (holding bitbrains_rnd.csv.gz, smd.csv.gz and, optionally,
#    training_fleet/ from benchmarks/make_training_fleet.py): a warm-started `tft-top train
#    --device cuda` for whatever time is left, its whole log kept.
# Each step's output goes to $OUT/<step>.txt; a step that runs out of time is cut, the others still run.
# Missing Python packages (pytorch-forecasting, pandas 3, scikit-base) can be installed first
# from wheels: see the device tool's notes.
set -u
OUT=${OUT:-gpu_results}
BUDGET=${BUDGET:-560}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
T0=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
step() {   # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local l; l=$(left); [ "$limit" -gt "$l" ] && limit=$l
  if [ "$limit" -lt 20 ]; then echo "skipped $name: no time left" | tee "$OUT/$name.txt"; return; fi
  echo "== $name (up to $limit s)"
  timeout "$limit" "$@" 2>&1 | grep -v '^USDT' | tr '\r' '\n' > "$OUT/$name.txt"
  tail -25 "$OUT/$name.txt"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
  python3 -c "import sys, torch, pandas, pytorch_forecasting as pf; print(sys.version.split()[0], torch.__version__, pandas.__version__, pf.__version__)"
} > "$OUT/env.txt" 2>&1; cat "$OUT/env.txt"
step gpu_check 200 python3 benchmarks/gpu_check.py --servers 10000 --runs 5
step bench 240 python3 benchmarks/bench_inference.py --runs 5 --sizes 25 100 1000 10000 --stock-max "${STOCK_MAX:-10000}"
step train_e2e 150 python3 -m tui.cli train --data demo_data --device cuda --epochs 2 --batches-per-epoch 40 \
  --workers 4 --no-eval --out "$OUT/e2e"
E2E=$(ls -d "$OUT"/e2e/tft_model_* 2>/dev/null | tail -1)
[ -n "$E2E" ] && step predict_e2e 60 python3 -m tui.cli predict --model "$E2E" --data demo_data --device cuda
step predict_shipped 60 python3 -m tui.cli predict --data demo_data --device cuda
DATA=${1:-}
if [ -n "$DATA" ]; then
  MODEL=$(ls -d models/tft_model_* | sort | tail -1)
  FLEET=(); [ -d "$DATA/training_fleet" ] && FLEET=(--data "$DATA/training_fleet")
  L=$(left); MT=$(python3 -c "print(round(max(0.5, ($L - 150) / 60.0), 1))")   # data preparation and calibration: ~2.5 min
  step train "$L" python3 -m tui.cli train --data demo_data "${FLEET[@]}" --data "$DATA/bitbrains_rnd.csv.gz" \
    --data "$DATA/smd.csv.gz" --init-from "$MODEL" --learning-rate 0.001 --batch-size 256 --batches-per-epoch 150 \
    --workers 8 --device cuda --max-time "$MT" --no-eval --out "$OUT"
fi
echo "done in $(( $(date +%s) - T0 )) s"
