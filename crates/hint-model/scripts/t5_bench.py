"""Times transformers' eager PyTorch T5 on the shapes of `benches/t5.rs`, for the
side-by-side comparison in the issue (same machine, same libtorch 2.13.0, same threads).

    python crates/hint-model/scripts/t5_bench.py [--same-allocator] [--greedy-only | --train-only]   # torch==2.13.0, transformers

`--same-allocator` gives Python the glibc setting that `hint` and its benches apply
(`hint_model::retain_freed_memory`: freed memory is kept for reuse, not returned to the
kernel), for a comparison of the models alone.
"""

import os
import sys
import time

import torch
from transformers import T5Config, T5ForConditionalGeneration

if "--same-allocator" in sys.argv and os.environ.get("MALLOC_MMAP_MAX_") != "0":
    # glibc reads these once, at start-up: run again with them set (the values of
    # `retain_freed_memory`: no mmap, trim threshold i32::MAX).
    env = dict(os.environ, MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2**31 - 1))
    os.execve(sys.executable, [sys.executable] + sys.argv, env)
print("allocator:", "retains freed memory" if os.environ.get("MALLOC_MMAP_MAX_") == "0" else "glibc defaults")

torch.set_num_threads(torch.get_num_threads())

SHAPES = {
    "tiny": dict(cfg=dict(vocab_size=512, d_model=8, d_kv=3, num_heads=4, d_ff=16, num_layers=2), batch=8, inp=64, tgt=16),
    "small": dict(cfg=dict(vocab_size=32128, d_model=512, d_kv=64, num_heads=6, d_ff=1024, num_layers=8), batch=8, inp=256, tgt=64),
}


def timeit(fn, warmup=2, reps=10):
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


for name, s in SHAPES.items():
    torch.manual_seed(0)
    config = T5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **s["cfg"])
    model = T5ForConditionalGeneration(config).train()
    inputs = torch.randint(config.vocab_size, (s["batch"], s["inp"]))
    labels = torch.randint(config.vocab_size, (s["batch"], s["tgt"]))

    def step(dtype):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        model.zero_grad()  # set_to_none, as hint drops its gradients

    for dtype in ("f32", "bf16") if "--greedy-only" not in sys.argv else ():
        print(f"train_step {name} {dtype}: {timeit(lambda: step(dtype), reps=5 if name == 'small' else 20) * 1e3:.1f} ms")
    if name == "small" and "--train-only" not in sys.argv:
        model.eval()
        mask = torch.ones_like(inputs)
        # f32, then bf16 weights and activations (hint's param_dtype and compute_dtype bfloat16).
        for dtype in ("f32", "bf16"):
            if dtype == "bf16":
                model.to(torch.bfloat16)
            with torch.no_grad():
                def gen():
                    model.generate(input_ids=inputs, attention_mask=mask, max_new_tokens=32, min_new_tokens=32,
                                   do_sample=False, num_beams=1)
                t = timeit(gen, warmup=1, reps=3)
            print(f"greedy small {dtype}: {t * 1e3:.1f} ms for {s['batch']}x32 tokens = {s['batch'] * 32 / t:.0f} tokens/s")
