"""Golden files for hint-model's T5: three tiny random T5 models and what Hugging Face
transformers computes for fixed inputs.

Run from the repository root with a Python that has torch, transformers and safetensors:

    python3 -m venv /tmp/golden && /tmp/golden/bin/pip install torch==2.13.0 "transformers==4.57.6" safetensors numpy
    /tmp/golden/bin/python crates/hint-model/scripts/t5_golden.py            # writes crates/hint-model/tests/data/t5/
    HINT_T5_EXPORT_DIR=/tmp/t5-export cargo xtask test -p hint-model --test t5_golden
    /tmp/golden/bin/python crates/hint-model/scripts/t5_golden.py --check-roundtrip /tmp/t5-export

transformers 5 ties `lm_head` to `shared` in every T5 (it forces `tie_word_embeddings=True`), which
is wrong for v1.1 checkpoints; the golden files pin the 4.x line, the last that loads v1.1 as trained.

The first command writes, per model, `config.json`, `model.safetensors` and `golden.json` (inputs, logits,
encoder states, loss, greedy and beam outputs, target scores). The last one loads the weights that the Rust
code saved in transformers and checks that they give the golden logits.
"""

import argparse
import json
import os
import sys

import torch
import transformers
from transformers import T5Config, T5ForConditionalGeneration

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "t5")

MODELS = {
    # T5 v1.0 style: ReLU, LM head tied to the shared embedding (d^-1/2 rescale).
    "v1_0_tied_relu": dict(d_model=16, d_kv=4, num_heads=2, d_ff=32, num_layers=2, feed_forward_proj="relu",
                           tie_word_embeddings=True),
    # T5 v1.1 style: gated GELU, untied head, inner width 32 != d_model 16.
    "v1_1_gated_gelu": dict(d_model=16, d_kv=8, num_heads=4, d_ff=24, num_layers=2, feed_forward_proj="gated-gelu",
                            tie_word_embeddings=False),
    # Unusual buckets and distance, unequal depths, gated SiLU.
    "odd_buckets_depths": dict(d_model=12, d_kv=6, num_heads=3, d_ff=20, num_layers=3, num_decoder_layers=1,
                               relative_attention_num_buckets=8, relative_attention_max_distance=20,
                               feed_forward_proj="gated-silu", tie_word_embeddings=False),
}
VOCAB = 64
MAX_NEW_TOKENS = 8
BEAMS = [dict(num_beams=3, length_penalty=1.0, early_stopping=False),
         dict(num_beams=4, length_penalty=0.6, early_stopping=True)]


def inputs(seed, batch=3, length=24):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    lengths = [length, length - 7, length - 15]
    mask = torch.zeros(batch, length, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n - 1] = 1  # EOS ends every input
        ids[i, n:] = 0
    labels = torch.randint(3, VOCAB, (batch, 6), generator=g)
    labels[:, -1] = 1
    labels[1, 4:] = -100  # a shorter target
    candidates = torch.randint(3, VOCAB, (batch, 3, 4), generator=g)
    candidates[:, :, -1] = 1
    return ids, mask, labels, candidates


def generated(sequences):
    """New tokens of each row, up to and including the first EOS (HF pads with EOS or pad)."""
    rows = []
    for row in sequences.tolist():
        row = row[1:]
        if 1 in row:
            row = row[: row.index(1) + 1]
        rows.append(row)
    return rows


def golden_for(name, kwargs, seed):
    torch.manual_seed(seed)
    config = T5Config(vocab_size=VOCAB, dropout_rate=0.1, decoder_start_token_id=0, pad_token_id=0,
                      eos_token_id=1, **kwargs)
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        # Make EOS likelier so that some generations end before the length limit.
        head = model.shared.weight if config.tie_word_embeddings else model.lm_head.weight
        head[1] *= 2.5
        # Random tiny models repeat one token forever; sharper position biases and attention
        # make the output depend on the step, which is what the cache tests need.
        for stack in (model.encoder, model.decoder):
            stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight *= 8.0
            for block in stack.block:
                block.layer[0].SelfAttention.q.weight *= 3.0
                block.layer[0].SelfAttention.o.weight *= 6.0
                block.layer[-1].DenseReluDense.wo.weight *= 4.0
    ids, mask, labels, candidates = inputs(seed)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        greedy = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                num_beams=1, output_scores=True, return_dict_in_generate=True)
        transition = model.compute_transition_scores(greedy.sequences, greedy.scores, normalize_logits=True)
        greedy_rows = generated(greedy.sequences)
        greedy_scores = [float(transition[i, : len(r)].sum()) for i, r in enumerate(greedy_rows)]
        beams = []
        for setting in BEAMS:
            b = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                               output_scores=True, return_dict_in_generate=True, **setting)
            beams.append(dict(setting, tokens=generated(b.sequences), scores=b.sequences_scores.tolist()))
        scores = []
        for c in range(candidates.shape[1]):
            target = candidates[:, c, :].contiguous()
            logits = model(input_ids=ids, attention_mask=mask, labels=target).logits
            logp = torch.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
            scores.append(logp.sum(-1).tolist())
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    golden = dict(
        transformers_version=transformers.__version__,
        torch_version=torch.__version__,
        input_ids=ids.tolist(), attention_mask=mask.tolist(), labels=labels.tolist(),
        decoder_input_ids=model._shift_right(labels).tolist(),
        logits=out.logits.tolist(), encoder_last_hidden_state=out.encoder_last_hidden_state.tolist(),
        loss=float(out.loss), max_new_tokens=MAX_NEW_TOKENS,
        greedy=dict(tokens=greedy_rows, scores=greedy_scores), beams=beams,
        candidates=candidates.tolist(), candidate_scores=[list(x) for x in zip(*scores)],
    )
    with open(os.path.join(folder, "golden.json"), "w") as f:
        json.dump(golden, f)
    for extra in ("generation_config.json",):
        path = os.path.join(folder, extra)
        if os.path.exists(path):
            os.remove(path)
    print(f"{name}: loss {golden['loss']:.6f}, greedy {greedy_rows}")


def check_roundtrip(export_dir):
    failures = 0
    for name in MODELS:
        folder = os.path.join(export_dir, name)
        golden = json.load(open(os.path.join(OUT, name, "golden.json")))
        model = T5ForConditionalGeneration.from_pretrained(folder).eval()
        with torch.no_grad():
            logits = model(input_ids=torch.tensor(golden["input_ids"]),
                           attention_mask=torch.tensor(golden["attention_mask"]),
                           decoder_input_ids=torch.tensor(golden["decoder_input_ids"])).logits
        diff = (logits - torch.tensor(golden["logits"])).abs().max().item()
        ok = diff <= 1e-5
        failures += not ok
        print(f"{name}: transformers loaded the Rust-saved weights; max |logits - golden| = {diff:.2e} "
              f"{'OK' if ok else 'FAIL'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-roundtrip", metavar="DIR")
    args = parser.parse_args()
    if args.check_roundtrip:
        check_roundtrip(args.check_roundtrip)
    else:
        for i, (name, kwargs) in enumerate(MODELS.items()):
            golden_for(name, kwargs, seed=1000 + i)
