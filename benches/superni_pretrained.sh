#!/usr/bin/env bash
# Super-NI from pretrained models, the whole chain in one command (issue 20): a tiny T5
# (configs/models/t5_tiny.gin, the T5 tokenizer) pretrained with span corruption on the
# shared English corpus (configs/t5_pretrain.gin), then HINT-pretrained from it
# (configs/pretrain.gin), then fine-tuned on the Super-NI subset by
# configs/experiments/superni_pretrained.gin: HINT from the HINT-pretrained checkpoint,
# concatenation from the span-corruption T5, 3 seeds each. Compare with
# configs/experiments/superni.gin's `hint` and `concat` arms at the same steps and seeds
# (from scratch). Every stage resumes: a rerun skips what is finished.
#
#   cargo build --release -p hint-cli
#   benches/superni_pretrained.sh [target/release/hint] [output folder]
#
# Steps: T5_STEPS (1500 of 32 segments of 141 tokens), HINT_STEPS (600 of 16),
# FINETUNE_STEPS (400 of 16, as the README's from-scratch table), SEEDS (3).
set -euo pipefail
HINT=${1:-target/release/hint}
OUT=${2:-/tmp/hint-experiments/pretraining}
T5_STEPS=${T5_STEPS:-1500}
HINT_STEPS=${HINT_STEPS:-600}
FINETUNE_STEPS=${FINETUNE_STEPS:-400}
SEEDS=${SEEDS:-3}
SHARED=${HINT_SHARED_DATA:-$(dirname "$0")/../../shared/data}
TOKENIZER=$SHARED/t5-tokenizer/tokenizer.json
for need in "$TOKENIZER" "$SHARED/corpus/wordnet-glosses.txt" "$SHARED/superni"; do
  [ -e "$need" ] || { echo "missing $need (set HINT_SHARED_DATA)"; exit 1; }
done
CORPUS="[\"$SHARED/corpus/python-docs-paragraphs.txt\", \"$SHARED/corpus/wordnet-glosses.txt\"]"
COMMON=(--gin_search_paths=configs --gin_file=models/t5_tiny.gin
        --gin.CORPUS_FILES="$CORPUS" --gin.TOKENIZER=\""$TOKENIZER"\"
        --gin.hint.train.TrainConfig.compute_dtype=\"float32\")
latest() { ls -d "$1"/checkpoint_* | sort | tail -1; }

echo "== 1. T5 span corruption, $T5_STEPS steps"
"$HINT" train "${COMMON[@]}" --gin_file=t5_pretrain.gin --gin.MODEL_DIR=\""$OUT/t5"\" \
  --gin.TRAIN_STEPS="$T5_STEPS" --gin.BATCH_SIZE=32 --gin.INPUTS_LENGTH=128 --gin.TARGETS_LENGTH=29 \
  --gin.hint.train.TrainConfig.checkpoint_every=500
T5_CHECKPOINT=$(latest "$OUT/t5")

echo "== 2. HINT pretraining from $T5_CHECKPOINT, $HINT_STEPS steps"
# Glosses are short: 8 texts per example, cut into segments of 190 tokens.
"$HINT" train "${COMMON[@]}" --gin_file=pretrain.gin --gin.MODEL_DIR=\""$OUT/hint"\" \
  --gin.INITIAL_CHECKPOINT=\""$T5_CHECKPOINT"\" --gin.TRAIN_STEPS="$HINT_STEPS" --gin.BATCH_SIZE=16 \
  --gin.MICROBATCHES=1 "--gin.hint.train.Run.lengths=(128, 128, 64)" \
  --gin.hint.data.Corpus.segment_length=190 --gin.hint.data.Corpus.texts_per_example=8 \
  --gin.hint.train.TrainConfig.checkpoint_every=300
HINT_CHECKPOINT=$(latest "$OUT/hint")

echo "== 3. Super-NI from $T5_CHECKPOINT (concat) and $HINT_CHECKPOINT (hint), $FINETUNE_STEPS steps"
"$HINT" experiment run --gin_file=configs/experiments/superni_pretrained.gin \
  --gin.NI_PATH=\""$SHARED/superni"\" --gin.TOKENIZER=\""$TOKENIZER"\" \
  --gin.TRAIN_STEPS="$FINETUNE_STEPS" --gin.OUTPUT_DIR=\""$OUT/superni"\" \
  --gin.T5_CHECKPOINT=\""$T5_CHECKPOINT"\" --gin.HINT_CHECKPOINT=\""$HINT_CHECKPOINT"\" --seeds "$SEEDS"
