#!/usr/bin/env bash
# Peak memory and step time of a T5 training step (forward, loss, backward) at the
# T5-v1.1-base shape (d_model 768, 12+12 layers, 12 heads, d_ff 2048, vocab 32128), batch
# 8 × (512 + 128), f32 and bf16, without and with rematerialisation: hint
# (`examples/t5_step.rs`) against transformers' eager PyTorch (`scripts/t5_step.py`,
# `gradient_checkpointing_enable()` for the rematerialised column), each configuration in
# fresh processes, alternating, same libtorch 2.13.0 and threads, same glibc setting; and
# hint's `minimal` policy (the weight products kept), which transformers has no switch for.
#
#   cargo build --release -p hint-model --example t5_step
#   benches/t5_memory.sh [python-with-transformers] [shape] [steps]
set -euo pipefail
PYTHON=${1:-$HOME/.cache/hint/torch-2.13.0/bin/python}
SHAPE=${2:-base}
STEPS=${3:-2}
HINT_STEP=${HINT_STEP:-target/release/examples/t5_step}
SCRIPT=crates/hint-model/scripts/t5_step.py

for dtype in f32 bf16; do
  for remat in none full; do
    "$HINT_STEP" "$SHAPE" "$dtype" "$remat" "$STEPS" | tail -2
    "$PYTHON" "$SCRIPT" "$SHAPE" "$dtype" "$remat" "$STEPS" 2>/dev/null | tail -2
  done
  "$HINT_STEP" "$SHAPE" "$dtype" minimal "$STEPS" | tail -2
done
