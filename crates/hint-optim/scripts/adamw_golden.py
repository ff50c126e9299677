#!/usr/bin/env python3
"""Golden trajectory for hint-optim's AdamW groups (tests/adamw.rs reads it):
`torch.optim.AdamW` over a matrix and a vector for 8 steps with betas (0.9, 0.99),
eps 1e-6, weight decay 0.1 and the learning rate of t5x's `constant * linear_warmup`
schedule (base 1e-2, 4 warm-up steps) at the global step before each update.

    python crates/hint-optim/scripts/adamw_golden.py > crates/hint-optim/tests/data/adamw_golden.json

Needs only torch (the venv `cargo xtask setup` makes has it).
"""
import json

import torch

torch.manual_seed(0)
SHAPES = {"b": [5], "w": [3, 4]}
STEPS = 8
initial = {name: torch.randn(shape) for name, shape in SHAPES.items()}
gradients = [{name: torch.randn(shape) for name, shape in SHAPES.items()} for _ in range(STEPS)]
learning_rates = [1e-2 * min(1.0, step / 4) for step in range(STEPS)]

params = {name: tensor.clone().requires_grad_(True) for name, tensor in initial.items()}
optimizer = torch.optim.AdamW(
    list(params.values()), lr=0.0, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.1, foreach=False
)
trajectory = []
for step in range(STEPS):
    for group in optimizer.param_groups:
        group["lr"] = learning_rates[step]
    for name, param in params.items():
        param.grad = gradients[step][name].clone()
    optimizer.step()
    trajectory.append({name: param.detach().flatten().tolist() for name, param in params.items()})

state = {
    name: {
        "m": optimizer.state[param]["exp_avg"].flatten().tolist(),
        "v": optimizer.state[param]["exp_avg_sq"].flatten().tolist(),
    }
    for name, param in params.items()
}
json.dump(
    {
        "torch": torch.__version__,
        "shapes": SHAPES,
        "initial": {name: t.flatten().tolist() for name, t in initial.items()},
        "gradients": [{name: g.flatten().tolist() for name, g in step.items()} for step in gradients],
        "learning_rates": learning_rates,
        "trajectory": trajectory,
        "state": state,
    },
    __import__("sys").stdout,
)
