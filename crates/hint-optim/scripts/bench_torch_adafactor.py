#!/usr/bin/env python3
"""Times torch.optim.Adafactor on the T5-v1.1-small parameter shapes of benches/adafactor.rs.

Run: /root/.cache/hint/torch-2.13.0/bin/python crates/hint-optim/scripts/bench_torch_adafactor.py
Compare with: cargo bench -p hint-optim --bench adafactor (same shapes, lr 1e-3, CPU).
torch's Adafactor factors every >= 2-D tensor over its last two dims and has no
parameter scaling; the work per element is comparable to t5x's.
"""
import statistics
import time

import torch


def t5_small_shapes():
    d_model, inner, d_ff, vocab, heads = 512, 6 * 64, 1024, 32128, 6
    shapes = [("shared.weight", (vocab, d_model)), ("lm_head.weight", (vocab, d_model))]
    for stack in ("encoder", "decoder"):
        for block in range(8):
            prefix = f"{stack}.block.{block}.layer"

            def attention(layer, name):
                for proj in ("q", "k", "v"):
                    shapes.append((f"{prefix}.{layer}.{name}.{proj}.weight", (inner, d_model)))
                shapes.append((f"{prefix}.{layer}.{name}.o.weight", (d_model, inner)))
                shapes.append((f"{prefix}.{layer}.layer_norm.weight", (d_model,)))

            attention(0, "SelfAttention")
            ff = 1
            if stack == "decoder":
                attention(1, "EncDecAttention")
                ff = 2
            if block == 0:
                shapes.append((f"{prefix}.0.SelfAttention.relative_attention_bias.weight", (32, heads)))
            for wi in ("wi_0", "wi_1"):
                shapes.append((f"{prefix}.{ff}.DenseReluDense.{wi}.weight", (d_ff, d_model)))
            shapes.append((f"{prefix}.{ff}.DenseReluDense.wo.weight", (d_model, d_ff)))
            shapes.append((f"{prefix}.{ff}.layer_norm.weight", (d_model,)))
        shapes.append((f"{stack}.final_layer_norm.weight", (d_model,)))
    return shapes


def main():
    torch.manual_seed(0)
    shapes = t5_small_shapes()
    params = [torch.nn.Parameter(torch.randn(s) * 0.05) for _, s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    print(f"{len(params)} tensors, {sum(p.numel() for p in params) / 1e6:.1f}M parameters, "
          f"{torch.get_num_threads()} threads")
    for foreach in (False, True):
        opt = torch.optim.Adafactor(params, lr=1e-3, foreach=foreach)
        for _ in range(3):
            opt.step()
        times = []
        for _ in range(20):
            start = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - start)
        print(f"torch.optim.Adafactor foreach={foreach}: median {statistics.median(times) * 1e3:.1f} ms, "
              f"min {min(times) * 1e3:.1f} ms over 20 steps")


if __name__ == "__main__":
    main()
