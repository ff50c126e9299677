"""transformers' side of `examples/t5_step.rs`: training steps of T5 (forward, loss,
backward, zero_grad) at the same shape, batch and dtype, with `gradient_checkpointing_enable()`
for REMAT=full; prints each step's time and the process's peak resident set.

    python crates/hint-model/scripts/t5_step.py SHAPE DTYPE REMAT [STEPS]   # torch==2.13.0, transformers

bf16 is autocast (transformers' way to train T5 in bf16 on a CPU), f32 plain. The glibc
setting hint applies to itself (freed memory kept for reuse) is applied here too, so that
the peak resident sets compare the models, not the allocators.
"""

import os
import resource
import sys
import time

if os.environ.get("MALLOC_MMAP_MAX_") != "0":
    env = dict(os.environ, MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2**31 - 1))
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import torch  # noqa: E402
from transformers import T5Config, T5ForConditionalGeneration  # noqa: E402

shape, dtype, remat = (sys.argv[1:4] + ["small", "f32", "none"][len(sys.argv) - 1:])[:3]
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
dims = {
    "small": dict(d_model=512, d_kv=64, num_heads=6, d_ff=1024, num_layers=8),
    "base": dict(d_model=768, d_kv=64, num_heads=12, d_ff=2048, num_layers=12),
}[shape]
torch.manual_seed(0)
config = T5Config(vocab_size=32128, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                  dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                  use_cache=False, **dims)
model = T5ForConditionalGeneration(config).train()
if remat == "full":
    model.gradient_checkpointing_enable()
batch, input_len, target_len = 8, 512, 128
inputs = torch.randint(config.vocab_size, (batch, input_len))
labels = torch.randint(config.vocab_size, (batch, target_len))
times = []
for step in range(steps):
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        loss = model(input_ids=inputs, labels=labels).loss
    loss.backward()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"transformers {shape} {dtype} remat={remat} step {step}: {seconds:.2f} s, "
          f"peak resident {peak / 1e9:.2f} GB", flush=True)
    times.append(seconds)
timed = times[1:] or times
print(f"transformers {shape} {dtype} remat={remat}: {sum(timed) / len(timed):.2f} s per step "
      "(mean of steps after the first)")
