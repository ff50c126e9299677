#!/usr/bin/env bash
# `hint plan`'s prediction against the measured peak of a training step, at sizes this
# machine can run: HINT at the T5-v1.1-small shape (f32) and at the T5-v1.1-base shape
# (bf16 activations), each without rematerialisation and with `minimal` and `full`. The
# measured peak is the bytes CPU tensors held at the second step (`peak_tensor_bytes` of
# metrics.jsonl, counted from libtorch's allocation reports; one process with one pass
# drops its gradients before each step, so the steps peak alike); the first step's peak
# and the process's peak resident set are printed beside it.
#
#   cargo build --release -p hint-cli && benches/memory_validate.sh [target/release/hint] [large]
#
# With `large`, also two steps of HINT at the T5-v1.1-large shape with remat_policy=full
# (the scale demonstration: it must fit this machine's 24 GB), timed.
set -euo pipefail
HINT=${1:-target/release/hint}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

COMMON=(--gin.Run.device=\"cpu\" --gin.Run.eval_sets="()" --gin.TrainConfig.checkpoint_every=100000
        --gin.TRAIN_STEPS=2 --gin.T5Config.vocab_size=32128)
SMALL=(--gin.T5Config.d_model=512 --gin.T5Config.d_kv=64 --gin.T5Config.d_ff=1024 --gin.T5Config.num_heads=6
       --gin.T5Config.num_layers=8 --gin.T5Config.num_decoder_layers=8 "--gin.Run.lengths=(128, 64, 32)"
       --gin.BATCH_SIZE=8 --gin.TrainConfig.compute_dtype=\"float32\")
BASE=(--gin.T5Config.d_model=768 --gin.T5Config.d_kv=64 --gin.T5Config.d_ff=2048 --gin.T5Config.num_heads=12
      --gin.T5Config.num_layers=12 --gin.T5Config.num_decoder_layers=12 "--gin.Run.lengths=(256, 64, 64)"
      --gin.BATCH_SIZE=4 --gin.TrainConfig.compute_dtype=\"bfloat16\")
LARGE=(--gin.T5Config.d_model=1024 --gin.T5Config.d_kv=64 --gin.T5Config.d_ff=2816 --gin.T5Config.num_heads=16
       --gin.T5Config.num_layers=24 --gin.T5Config.num_decoder_layers=24 "--gin.Run.lengths=(512, 128, 128)"
       --gin.BATCH_SIZE=8 --gin.TrainConfig.compute_dtype=\"bfloat16\" --gin.HyperConfig.adapter_size=64
       --gin.HyperConfig.num_prefix_tokens=30)

check() { # name remat args…
  local name=$1 remat=$2; shift 2
  local dir="$WORK/$name-$remat"
  local started=$SECONDS
  OMP_NUM_THREADS=2 "$HINT" train --gin.MODEL_DIR=\""$dir"\" "${COMMON[@]}" "$@" \
    --gin.TrainConfig.remat_policy=\""$remat"\" >"$dir.log" 2>&1
  local seconds=$((SECONDS - started))
  # The plan, told the share of distinct instructions the step had (it assumes one per
  # example unless told).
  local share
  share=$(python3 -c "import json,sys; m=next(json.loads(l)['memory'] for l in open(sys.argv[1]) if '\"memory\"' in l); print(m['instructions'] / m['examples'])" "$dir/metrics.jsonl")
  local plan
  plan=$("$HINT" plan --format json --instructions_per_example "$share" "${COMMON[@]}" "$@" \
    --gin.TrainConfig.remat_policy=\""$remat"\" 2>/dev/null)
  python3 - "$name" "$remat" "$dir/metrics.jsonl" "$seconds" <<PY
import json, sys
name, remat, metrics, seconds = sys.argv[1:]
plan = json.loads('''$plan''')
lines = [json.loads(l) for l in open(metrics)]
memory = next(l["memory"] for l in lines if "memory" in l)
step = next(l for l in lines if "loss" in l)
batch = memory["examples"]
predicted = plan[{"none": "peak_bytes_without_remat", "minimal": "peak_bytes_with_minimal_remat"}.get(remat, "peak_bytes_with_remat")]
# The second step: the first one's allocations (the optimizer's state) exist by then.
second = [l for l in lines if "loss" in l][1]
measured = second["peak_tensor_bytes"]
print(f"{name} remat={remat}: {plan['parameters'] / 1e6:.0f}M parameters, batch {batch} "
      f"({memory['instructions']} instructions): predicted {predicted / 1e9:.2f} GB, "
      f"measured {measured / 1e9:.2f} GB of tensors at the second step ({predicted / measured - 1:+.0%}; "
      f"first step {memory['peak'] / 1e9:.2f} GB); peak resident set {second['peak_memory_bytes'] / 1e9:.2f} GB; "
      f"the first step took {batch / step['examples_per_second']:.1f} s ({seconds} s for the whole run)")
PY
}

for remat in none minimal full; do
  check small "$remat" "${SMALL[@]}"
  check base "$remat" "${BASE[@]}"
done
if [ "${2:-}" = large ]; then
  check large full "${LARGE[@]}"
fi
