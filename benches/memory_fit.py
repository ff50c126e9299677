#!/usr/bin/env python3
"""Fits the bytes per element of `hint plan`'s activation terms (crates/hint-train/src/plan.rs)
to measured first steps.

For each configuration below it asks `hint plan --format json` for the per-example terms,
then trains one step in a fresh process at two batch sizes and reads the first step's
memory report from metrics.jsonl; the difference of the two `activations` over the
difference of the batches is what one more example costs. A non-negative least-squares
fit over the configurations gives the bytes per element of each term (`kept`), then,
from runs with `remat_policy = "full"`, the bytes per block-input and bias element.

    cargo build --release -p hint-cli
    python3 benches/memory_fit.py [target/release/hint] [float32|bfloat16] [dropout]

Prints the coefficients to paste into plan.rs, and each configuration's measured and
predicted bytes per example. The steps run the fused CPU kernels (the default): their
coefficients go to `fused_activation_bytes`; with `HINT_FUSED_KERNELS=0` in the
environment they run libtorch's operators, which is what `activation_bytes` holds for
CUDA runs. Nothing but the Python standard library is needed.
"""
import json
import os
import subprocess
import sys
import tempfile

HINT = sys.argv[1] if len(sys.argv) > 1 else "target/release/hint"
DTYPE = sys.argv[2] if len(sys.argv) > 2 else "float32"
DROPOUT = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
BATCHES = (8, 32)

KEPT = ["hidden", "feed_forward", "attention", "projections", "logits", "generated",
        "hypernetwork"]

BASE = [
    '--gin.Run.eval_sets=()',
    '--gin.Run.device="cpu"',
    f'--gin.TrainConfig.compute_dtype="{DTYPE}"',
    f"--gin.T5Config.dropout_rate={DROPOUT}",
]


def shape(d, ff, heads, layers, dec_layers=None, kv=32):
    return [
        f"--gin.T5Config.d_model={d}",
        f"--gin.T5Config.d_ff={ff}",
        f"--gin.T5Config.num_heads={heads}",
        f"--gin.T5Config.d_kv={kv}",
        f"--gin.T5Config.num_layers={layers}",
        f"--gin.T5Config.num_decoder_layers={dec_layers or layers}",
    ]


def lengths(inputs, hyper, targets):
    return [f"--gin.Run.lengths=({inputs}, {hyper}, {targets})"]


PLAIN = ["--gin.HyperConfig.use_instructions=False", "--gin.HyperConfig.use_adapter=False",
         "--gin.HyperConfig.use_prefix=False", "--gin.HyperConfig.use_fusion_in_decoder=False"]

CONFIGS = {
    "long-heads": shape(128, 256, 12, 2, kv=16) + lengths(128, 32, 64),
    "default": [],
    "wide-ff": shape(128, 1024, 4, 2),
    "wide": shape(256, 512, 8, 2),
    "deep": shape(128, 256, 4, 4, 3),
    "heads": shape(128, 256, 12, 2, kv=16),
    "long-inputs": lengths(96, 32, 16),
    "long-instruction": lengths(24, 96, 16),
    "long-targets": lengths(24, 32, 64),
    "vocab": ["--gin.T5Config.vocab_size=8000"],
    "plain": PLAIN + lengths(56, 32, 16),
    "plain-wide": PLAIN + shape(256, 1024, 8, 3) + lengths(64, 32, 24),
    "big-adapter": ["--gin.HyperConfig.adapter_size=64", "--gin.HyperConfig.num_prefix_tokens=16"],
    # At the widths of real models, so that nothing is extrapolated from d_model 128.
    "d512": shape(512, 1024, 6, 2, kv=64) + ["--gin.T5Config.vocab_size=32128"] + lengths(64, 32, 32),
    "d512-long": shape(512, 1024, 6, 2, kv=64) + lengths(128, 64, 32),
    "d512-plain": PLAIN + shape(512, 1024, 6, 2, kv=64) + lengths(128, 32, 32),
    "d384-ff": shape(384, 1536, 6, 2, kv=64) + lengths(64, 32, 16),
    "d512-deep": shape(512, 1024, 6, 6, kv=64) + lengths(96, 48, 24),
}


def run(args):
    return subprocess.run([HINT] + args, capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})


def terms(config):
    plan = json.loads(run(["plan", "--format", "json"] + BASE + config).stdout)
    return plan["terms"]


def activations(config, batch, remat):
    """The first step's memory report: (activation bytes, examples, distinct instructions)."""
    with tempfile.TemporaryDirectory() as tmp:
        run(["train", f'--gin.MODEL_DIR="{tmp}/run"', "--gin.TRAIN_STEPS=1",
             f"--gin.BATCH_SIZE={batch}", "--gin.TrainConfig.checkpoint_every=1000",
             f'--gin.TrainConfig.remat_policy="{remat}"'] + BASE + config)
        for line in open(f"{tmp}/run/metrics.jsonl"):
            row = json.loads(line)
            if "memory" in row:
                m = row["memory"]
                assert m["measured"] == "tensors", m
                return m["activations"], m["examples"], m["instructions"]
    raise RuntimeError("no memory line")


def total(t, examples, instructions):
    """As StepTerms::total in plan.rs."""
    out = {k: t["per_example"][k] * examples + t["per_instruction"][k] * instructions
           for k in KEPT}
    for s in t["stacks"]:
        rows = instructions if s["per_instruction"] else examples
        for k in KEPT:
            out[k] += s["block"][k] * rows * s["blocks"]
    return out


def dot(t, c):
    return sum(t[k] * c[k] for k in KEPT)


def remat_parts(t, kept, examples, instructions):
    """The parts of MemoryPlan::peak_bytes(Full) in plan.rs: (block-input elements, bias
    elements, the largest block's kept bytes, the logits chunk's bytes, the other bytes
    outside the blocks). The logits are rematerialised a chunk of at most 8M elements at
    a time. The peak is counted with one recomputed block and one chunk together: at most
    what there is (one may be gone when the other comes), so that the plan errs on the
    side of fitting."""
    def rows(s):
        return instructions if s["per_instruction"] else examples
    inputs = sum(rows(s) * s["block"]["hidden"] * s["blocks"] for s in t["stacks"])
    biases = sum(rows(s) * s["biases"] for s in t["stacks"])
    largest = max(rows(s) * dot(s["block"], kept) for s in t["stacks"])
    logits = t["per_example"]["logits"] * kept["logits"] * examples
    chunk = min(t["per_example"]["logits"] * examples, 8 << 20) * kept["logits"]
    rest = dot(t["per_example"], kept) * examples - logits \
        + dot(t["per_instruction"], kept) * instructions
    return inputs, biases, largest, chunk, rest


def remat_bytes(parts, block_input, bias, recomputed):
    inputs, biases, largest, chunk, rest = parts
    return inputs * block_input + biases * bias + largest * recomputed + chunk + rest


def nnls(rows, ys, iterations=20000):
    """min ||A x - y||, x >= 0, by cyclic coordinate descent on scaled columns."""
    n = len(rows[0])
    scale = [max(abs(r[j]) for r in rows) or 1.0 for j in range(n)]
    a = [[r[j] / scale[j] for j in range(n)] for r in rows]
    x = [0.0] * n
    for _ in range(iterations):
        for j in range(n):
            residual = [y - sum(r[k] * x[k] for k in range(n) if k != j) for r, y in zip(a, ys)]
            norm = sum(r[j] * r[j] for r in a)
            if norm > 0:
                x[j] = max(0.0, sum(r[j] * e for r, e in zip(a, residual)) / norm)
    return [x[j] / scale[j] for j in range(n)]


def main():
    names = list(CONFIGS)
    all_terms = {n: terms(CONFIGS[n]) for n in names}
    cache = os.environ.get("MEMORY_FIT_CACHE")
    runs = json.load(open(cache)) if cache and os.path.exists(cache) else {}
    for n in names:
        runs.setdefault(n, {})
        for remat in ("none", "full"):
            if remat not in runs[n]:
                runs[n][remat] = [activations(CONFIGS[n], b, remat) for b in BATCHES]
        print(f"{n}: {runs[n]}", file=sys.stderr)
    if cache:
        json.dump(runs, open(cache, "w"))

    def difference(n, remat):
        (a1, b1, i1), (a2, b2, i2) = runs[n][remat]
        return a2 - a1, (b1, i1), (b2, i2)

    rows, ys = [], []
    for n in names:
        y, low, high = difference(n, "none")
        t_low, t_high = total(all_terms[n], *low), total(all_terms[n], *high)
        rows.append([t_high[k] - t_low[k] for k in KEPT])
        ys.append(y)
    kept = dict(zip(KEPT, nnls(rows, ys)))
    remat_rows, remat_ys = [], []
    for n in names:
        y, low, high = difference(n, "full")
        lo, hi = (remat_parts(all_terms[n], kept, *r) for r in (low, high))
        remat_rows.append([hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]])
        remat_ys.append(y - (hi[3] - lo[3]) - (hi[4] - lo[4]))
    block_input, bias, recomputed = nnls(remat_rows, remat_ys)
    print(json.dumps({"dtype": DTYPE, "dropout": DROPOUT,
                      "kept": {k: round(v, 2) for k, v in kept.items()},
                      "block_input": round(block_input, 2), "bias": round(bias, 2),
                      "recomputed": round(recomputed, 3)}, indent=1))
    print(f"configuration: measured / predicted bytes from {BATCHES[0]} to {BATCHES[1]} examples"
          " (remat none; full)")
    for n, row, y in zip(names, rows, ys):
        none = sum(a * kept[k] for a, k in zip(row, KEPT))
        (measured_full, low, high) = difference(n, "full")
        lo, hi = (remat_parts(all_terms[n], kept, *r) for r in (low, high))
        full = remat_bytes(hi, block_input, bias, recomputed) \
            - remat_bytes(lo, block_input, bias, recomputed)
        print(f"  {n}: {y:.0f} / {none:.0f} ({none / y - 1:+.0%}); "
              f"{measured_full:.0f} / {full:.0f} ({full / measured_full - 1:+.0%})")


if __name__ == "__main__":
    main()
