#!/bin/bash
# Train model variants side by side on one lent GPU, within one call of the device tool.
# Usage, from the repository root on the GPU machine:
#
#   OUT=dir MAXTIME=5.8 bash benchmarks/gpu_train.sh DATA_DIR NAME="--data A --data B ..." [NAME2="..."]
#
# DATA_DIR holds bitbrains_rnd.csv.gz, smd.csv.gz and the training fleets (trn/ and, for
# variants that name it, trd/) from benchmarks/make_training_fleet.py; made here with
#
#   mkdir -p .gpudata && cp ../shared/data/real/{bitbrains_rnd,smd}.csv.gz .gpudata/ &&
#   python benchmarks/make_training_fleet.py .gpudata/trn &&
#   python benchmarks/make_training_fleet.py .gpudata/trd --seed 2028 --prefix trd- --daily-templates 0.6
#
# (list .gpudata/ in .git/info/exclude and pass it, with .whl/, in the device tool's carry:
# about 43 MB).  A warm start needs about a minute before its first batch (data preparation
# measured at 32 s on the 2-core CPU) and a minute after (calibration, writing).  Each variant is a
# warm start from the newest shipped model (same settings as the shipped model's last
# step: ramp share 0.25, learning rate LR, default 3e-4: on the CPU the daily-routine fine-tune
# at 1e-3 stopped at its second epoch and missed 12 cells, at 3e-4 11 and it was shipped) at
# batch 256, and writes its model directory and its whole log under $OUT/NAME/.  Evaluation
# is left to `tft-top eval` afterwards.
set -u
OUT=${OUT:-gpu_train}; MAXTIME=${MAXTIME:-5.8}; WORKERS=${WORKERS:-6}; LR=${LR:-0.0003}
DATA=$1; shift
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
MODEL=$(ls -d models/tft_model_* | sort | tail -1)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; echo "warm start from $MODEL"
pids=()
for spec in "$@"; do
  name=${spec%%=*}; args=${spec#*=}; args=${args//DATA/$DATA}
  mkdir -p "$OUT/$name"
  # shellcheck disable=SC2086
  ( T0=$(date +%s); python3 -m tui.cli train $args --init-from "$MODEL" --learning-rate "$LR" --ramp-share 0.25 \
      --batch-size 256 --batches-per-epoch 300 --epochs 100 --workers "$WORKERS" --device cuda \
      --max-time "$MAXTIME" --no-eval --out "$OUT/$name" 2>&1 | tr '\r' '\n' | grep -v '^USDT' > "$OUT/$name/log.txt"; echo "Elapsed $(( $(date +%s) - T0 )) s" >> "$OUT/$name/log.txt" ) &
  pids+=($!)
done
( sleep 150; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv ) > "$OUT/nvidia_smi_150s.txt" 2>&1 &
for p in "${pids[@]}"; do wait "$p"; done
for spec in "$@"; do name=${spec%%=*}; echo "== $name"; grep -E "stopped|val_loss|Elapsed|Maximum resident|Error|error|written" "$OUT/$name/log.txt" | tail -8; ls "$OUT/$name"; done
