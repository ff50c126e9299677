#!/usr/bin/env bash
# `hint serve` under load, HINT (with fusion in the decoder, the paper's design, and
# without) against the concatenation baseline served by the same server with the same
# batching: a model of each at the T5-v1.1-small shape (random
# weights after one step: the cost of serving does not depend on what was learnt), 50
# tasks with instructions of about 256 tokens, 20 concurrent clients, inputs of about
# 64 tokens, exactly 16 new tokens. Alternates the two servers; prints each run's
# requests/s, latency, errors, the server's peak resident set, and the adaptation cache's
# times. Localhost only, bounded in requests.
#
#   cargo build --release -p hint-cli && cargo build --release -p hint-serve --examples
#   benches/serve_load.sh [target/release/hint] [rounds] [requests per client]
set -euo pipefail
HINT=${1:-target/release/hint}
ROUNDS=${2:-2}
REQUESTS=${3:-5}
LOAD=${LOAD:-$(dirname "$HINT")/examples/load}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The T5 tokenizer (the shared data's), so instruction and input lengths are real T5 token counts.
TOKENIZER=${HINT_SHARED_DATA:-$(dirname "$0")/../../shared/data}/t5-tokenizer/tokenizer.json
[ -f "$TOKENIZER" ] || { echo "no T5 tokenizer at $TOKENIZER (set HINT_SHARED_DATA)"; exit 1; }
SHAPE=(--gin.hint.data.Vocabulary.tokenizer_file=\""$TOKENIZER"\"
       --gin.T5Config.vocab_size=32128 --gin.T5Config.d_model=512 --gin.T5Config.d_kv=64
       --gin.T5Config.d_ff=1024 --gin.T5Config.num_heads=6 --gin.T5Config.num_layers=8
       --gin.T5Config.num_decoder_layers=8 "--gin.Run.lengths=(64, 256, 16)"
       --gin.TRAIN_STEPS=1 --gin.BATCH_SIZE=4 --gin.Run.eval_sets="()" --gin.Run.device=\"cpu\")
"$HINT" train --gin.MODEL_DIR=\""$WORK/hint"\" "${SHAPE[@]}" >"$WORK/train.log" 2>&1 || { cat "$WORK/train.log"; exit 1; }
# HINT without fusion in the decoder (generated adapters and prefixes only): the decoder
# cross-attends to the input alone, as a multi-LoRA server's model does.
"$HINT" train --gin.MODEL_DIR=\""$WORK/hint-nofusion"\" "${SHAPE[@]}" --gin.HyperConfig.use_fusion_in_decoder=False \
  >"$WORK/train.log" 2>&1 || { cat "$WORK/train.log"; exit 1; }
"$HINT" train --gin.MODEL_DIR=\""$WORK/concat"\" "${SHAPE[@]}" --gin.Run.instruction_mode=\"concat\" \
  --gin.HyperConfig.use_instructions=False --gin.HyperConfig.use_adapter=False \
  --gin.HyperConfig.use_prefix=False --gin.HyperConfig.use_fusion_in_decoder=False \
  >"$WORK/train.log" 2>&1 || { cat "$WORK/train.log"; exit 1; }

serve() { # name → prints the run's lines
  local name=$1
  # SERVE_ARGS: more flags for every server, e.g. bf16 weights and activations:
  #   SERVE_ARGS='--gin.TrainConfig.param_dtype="bfloat16" --gin.TrainConfig.compute_dtype="bfloat16"'
  # shellcheck disable=SC2086
  "$HINT" serve --model_dir "$WORK/$name" --bind 127.0.0.1:0 --batch_window_ms 20 --max_batch_rows 64 ${SERVE_ARGS:-} \
    >"$WORK/$name.out" 2>"$WORK/$name.err" &
  local pid=$!
  local url=""
  for _ in $(seq 600); do
    url=$(sed -n 's/^listening on //p' "$WORK/$name.out")
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "$name: the server did not start"; cat "$WORK/$name.err"; kill "$pid"; return 1; }
  # 248 words → at most 253 instruction tokens, 60 words → at most 61 input tokens.
  echo "$name: $("$LOAD" "$url" 50 20 "$REQUESTS" 248 60 16 | tr '\n' ' ')"
  echo "$name: server peak resident set $(awk '/VmHWM/ {printf "%.2f GB", $2 / 1e6}' /proc/$pid/status)"
  kill -s TERM "$pid"
  wait "$pid"
}

for round in $(seq "$ROUNDS"); do
  echo "round $round"
  serve hint
  serve concat
  serve hint-nofusion
done
