#!/usr/bin/env bash
# Data-parallel throughput: 2 ranks × 1 thread (`hint launch`) against 1 rank × 1 thread at
# the same global batch, alternating, on the embedded default and at the T5-v1.1-small
# shape (the built-in data and its 800-token vocabulary). Throughput is the mean of rank
# 0's examples/s (global examples over the step's wall time, collectives included) after
# the first steps. Prints one line per run and the ratios, then how long the step's gradient
# all-reduce takes on its own (hint-dist's `allreduce_time` example, at the byte count the
# run logged).
#
#   cargo build --release -p hint-cli -p hint-dist --bins --examples && benches/data_parallel.sh [target/release/hint] [rounds]
set -euo pipefail
HINT=${1:-target/release/hint}
ALLREDUCE=${ALLREDUCE:-$(dirname "$HINT")/examples/allreduce_time}
ROUNDS=${2:-2}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

COMMON=(--gin.Run.device=\"cpu\" --gin.Run.eval_sets="()" --gin.TrainConfig.checkpoint_every=100000)
DEFAULT=(--gin.TRAIN_STEPS=30)
SMALL=(--gin.TRAIN_STEPS=8 --gin.BATCH_SIZE=16 --gin.T5Config.d_model=512 --gin.T5Config.d_kv=64
       --gin.T5Config.d_ff=1024 --gin.T5Config.num_heads=6 --gin.T5Config.num_layers=8
       --gin.T5Config.num_decoder_layers=8)

throughput() { # model dir → mean examples/s after the first 3 steps
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if '"loss"' in l]
rates = [r["examples_per_second"] for r in rows[3:]]
print(f"{sum(rates) / len(rates):.2f}")
PY
}

run() { # name ranks extra-args…
  local name=$1 ranks=$2; shift 2
  local dir="$WORK/$name-$ranks-$RANDOM"
  if [ "$ranks" = 1 ]; then
    OMP_NUM_THREADS=1 "$HINT" train --gin.MODEL_DIR=\""$dir"\" "${COMMON[@]}" "$@" >/dev/null 2>&1
  else
    "$HINT" launch --nproc_per_node "$ranks" train --gin.MODEL_DIR=\""$dir"\" "${COMMON[@]}" "$@" >"$WORK/$name.log" 2>&1
  fi
  throughput "$dir"
}

# The ceiling on this machine: two independent 1-thread processes, each at half the global
# batch, no communication at all. Their combined examples/s is what 2 ranks could reach if
# the collectives were free (what is left is the machine: shared memory bandwidth, and a
# half batch not taking half the time of a whole one).
ceiling() { # name extra-args… (the last BATCH_SIZE binding is halved)
  local name=$1; shift
  local batch=16
  for arg in "$@"; do case "$arg" in --gin.BATCH_SIZE=*) batch=${arg#*=};; esac; done
  [ "$name" = default ] && batch=48
  local a="$WORK/$name-half-a-$RANDOM" b="$WORK/$name-half-b-$RANDOM"
  OMP_NUM_THREADS=1 "$HINT" train --gin.MODEL_DIR=\""$a"\" "${COMMON[@]}" "$@" --gin.BATCH_SIZE=$((batch / 2)) >/dev/null 2>&1 &
  OMP_NUM_THREADS=1 "$HINT" train --gin.MODEL_DIR=\""$b"\" "${COMMON[@]}" "$@" --gin.BATCH_SIZE=$((batch / 2)) >/dev/null 2>&1
  wait
  python3 -c "import sys; print(f'{float(sys.argv[1]) + float(sys.argv[2]):.2f}')" "$(throughput "$a")" "$(throughput "$b")"
}

for workload in default small; do
  if [ "$workload" = default ]; then args=("${DEFAULT[@]}"); else args=("${SMALL[@]}"); fi
  one=(); two=(); top=()
  for round in $(seq "$ROUNDS"); do
    one+=("$(run "$workload" 1 "${args[@]}")")
    two+=("$(run "$workload" 2 "${args[@]}")")
    top+=("$(ceiling "$workload" "${args[@]}")")
    echo "$workload round $round: 1 rank ${one[-1]} examples/s, 2 ranks ${two[-1]} examples/s, 2 independent half-batch processes ${top[-1]} examples/s"
  done
  python3 -c "import sys; a=[float(x) for x in sys.argv[1].split()]; b=[float(x) for x in sys.argv[2].split()]; c=[float(x) for x in sys.argv[3].split()]; print(f'$workload: 2 ranks / 1 rank = {sum(b)/sum(a):.2f}x (per round: ' + ', '.join(f'{y/x:.2f}' for x,y in zip(a,b)) + f'); ceiling without communication {sum(c)/sum(a):.2f}x')" "${one[*]}" "${two[*]}" "${top[*]}"
  bytes=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/$workload.log" | grep -o 'gradient_bytes=[0-9]*' | head -1 | cut -d= -f2 || true)
  if [ -x "$ALLREDUCE" ] && [ -n "$bytes" ]; then
    echo "$workload: $bytes bytes of gradients summed per step; alone, on an idle machine:"
    "$ALLREDUCE" $((bytes / 4)) 2
  fi
done
