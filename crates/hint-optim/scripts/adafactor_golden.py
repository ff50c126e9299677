#!/usr/bin/env python3
"""Golden trajectories for hint-optim's Adafactor (tests/golden.rs reads them).

Run (CPU only, a minute):

    python3 -m venv /root/.cache/hint/optax-venv
    /root/.cache/hint/optax-venv/bin/pip install jax optax numpy
    /root/.cache/hint/optax-venv/bin/python crates/hint-optim/scripts/adafactor_golden.py \
        > crates/hint-optim/tests/data/adafactor_golden.json

Parameters and gradients come from a splitmix64 stream that tests/golden.rs
reimplements bit for bit, so the file holds only seeds, samples and checksums.

Cases:
* `optax_default`, `optax_momentum_wd`: `optax.adafactor` itself (same maths as t5x,
  its own step count from 0).
* `t5x_groups`: what optax cannot express (a restored global step with per-group
  `step_offset`, two groups with different settings, a schedule, global-norm
  clipping, `max_parameter_scale`, lr-scaled weight decay, momentum), computed by
  `t5x_update` below, a line-by-line f32 transcription of t5x's equations
  (reference §2). `t5x_update` is first checked against optax on the default case.
"""
import json
import math
import sys

import numpy as np

SEED = 20240607
STEPS = 20
CHECKPOINTS = [1, 2, 5, 10, 20]
SAMPLES = 48
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)

# name, shape; tie shapes exercise t5x's argsort tie-breaking.
PARAMS = [
    ("a.vector", (300,)),
    ("b.small", (16, 24)),
    ("a.matrix", (256, 384)),
    ("a.cube", (4, 130, 140)),
    ("b.square", (160, 160)),
    ("b.tie3", (130, 6, 130)),
]


def mix64(z):
    z = z.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stream(param_index, step, shape):
    """Uniform f32 values in [-1, 1), exact in f32; step 0 = initial parameter."""
    n = int(np.prod(shape))
    with np.errstate(over="ignore"):
        key = mix64(np.array([SEED * 1_000_003 + param_index * 1009 + step], dtype=np.uint64))[0]
        j = np.arange(n, dtype=np.uint64)
        x = mix64(key + j * np.uint64(0x9E3779B97F4A7C15))
    u = (x >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
    return (np.float32(2.0) * u - np.float32(1.0)).reshape(shape)


def grad(param_index, step, shape):
    # Powers of two keep the scaling exact while varying the magnitudes.
    return stream(param_index, step, shape) * np.float32(2.0 ** -(step % 4))


def sample_indices(n):
    return sorted({(k * 7919 + (k * n) // SAMPLES) % n for k in range(SAMPLES)})


def summary(params, initial):
    out = {}
    for (name, _), w, w0 in zip(PARAMS, params, initial):
        flat = np.asarray(w, dtype=np.float32).reshape(-1)
        delta = flat.astype(np.float64) - np.asarray(w0, dtype=np.float64).reshape(-1)
        idx = sample_indices(flat.size)
        out[name] = {
            "samples": [float(flat[i]) for i in idx],
            "sumsq": float(np.sum(flat.astype(np.float64) ** 2)),
            "delta_sumsq": float(np.sum(delta**2)),
        }
    return out


# ---------------------------------------------------------------- t5x, in numpy f32
def factored_dims(shape, factored, min_dim):
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    if shape[order[-2]] < min_dim:
        return None
    return int(order[-2]), int(order[-1])


def t5x_init(w, hp):
    fd = factored_dims(w.shape, hp["factored"], hp["min_dim_size_to_factor"])
    s = {}
    if fd:
        d1, d0 = fd
        s["v_row"] = np.zeros(np.delete(w.shape, d0), np.float32)
        s["v_col"] = np.zeros(np.delete(w.shape, d1), np.float32)
    else:
        s["v"] = np.zeros(w.shape, np.float32)
    if hp["beta1"] is not None:
        s["m"] = np.zeros(w.shape, np.float32)
    return s


def t5x_update(w, g, s, step, lr, hp):
    f32 = np.float32
    g = g.astype(f32)
    t = f32(step - hp["step_offset"]) + f32(1)
    rho = f32(1) - t ** f32(-hp["decay_rate"])
    mix = f32(1) - rho
    scale = f32(lr)
    if hp["multiply_by_parameter_scale"]:
        ps = max(np.sqrt(np.mean(w * w, dtype=f32)), f32(hp["epsilon2"]))
        if hp["max_parameter_scale"] is not None:
            ps = min(ps, f32(hp["max_parameter_scale"]))
        scale = scale * f32(ps)
    g2 = g * g + f32(hp["epsilon1"])
    fd = factored_dims(w.shape, hp["factored"], hp["min_dim_size_to_factor"])
    if fd:
        d1, d0 = fd
        s["v_row"] = rho * s["v_row"] + mix * np.mean(g2, axis=d0, dtype=f32)
        s["v_col"] = rho * s["v_col"] + mix * np.mean(g2, axis=d1, dtype=f32)
        rd1 = d1 - 1 if d1 > d0 else d1
        rcm = np.mean(s["v_row"], axis=rd1, keepdims=True, dtype=f32)
        r = (s["v_row"] / rcm) ** f32(-0.5)
        c = s["v_col"] ** f32(-0.5)
        u = g * np.expand_dims(r, d0) * np.expand_dims(c, d1)
    else:
        s["v"] = rho * s["v"] + mix * g2
        u = g * s["v"] ** f32(-0.5)
    if hp["clipping_threshold"] is not None:
        u = u / max(f32(1), np.sqrt(np.mean(u * u, dtype=f32)) / f32(hp["clipping_threshold"]))
    delta = scale * u
    if hp["beta1"] is not None:
        s["m"] = f32(hp["beta1"]) * s["m"] + f32(1 - hp["beta1"]) * delta
        delta = s["m"]
    wd = hp["weight_decay_rate"]
    if hp["weight_decay_rate_lr_exponent"]:
        wd = (wd or 1.0) * lr ** hp["weight_decay_rate_lr_exponent"]
    if wd is not None:
        return (f32(1 - wd) * w - delta).astype(f32)
    return (w - delta).astype(f32)


DEFAULT_HP = dict(
    factored=True, multiply_by_parameter_scale=True, beta1=None, decay_rate=0.8, step_offset=0,
    clipping_threshold=1.0, weight_decay_rate=None, weight_decay_rate_lr_exponent=None,
    min_dim_size_to_factor=128, epsilon1=1e-30, epsilon2=1e-3, global_norm_clip_threshold=None,
    max_parameter_scale=None,
)


def schedule_rsqrt(step, base, warmup):
    # t5x "constant * rsqrt_decay"
    return max(base / math.sqrt(max(step, warmup)), 1e-8)


def run_t5x(groups, first_step):
    """groups: prefix -> (hp, lr(step) function)."""
    params = [stream(i, 0, shape) for i, (_, shape) in enumerate(PARAMS)]
    initial = [p.copy() for p in params]
    group_of = [name.split(".")[0] for name, _ in PARAMS]
    states = [t5x_init(p, groups[grp][0]) for p, grp in zip(params, group_of)]
    checkpoints = {}
    for k in range(1, STEPS + 1):
        step = first_step + k - 1
        grads = [grad(i, k, shape) for i, (_, shape) in enumerate(PARAMS)]
        for grp, (hp, lr_fn) in groups.items():
            members = [i for i, g in enumerate(group_of) if g == grp]
            c = hp["global_norm_clip_threshold"]
            if c:
                gn = np.sqrt(sum(np.sum(np.square(grads[i]), dtype=np.float32) for i in members))
                sc = np.float32(c) * min(np.float32(1 / c), np.float32(1) / gn)
                for i in members:
                    grads[i] = grads[i] * sc
            for i in members:
                params[i] = t5x_update(params[i], grads[i], states[i], step, lr_fn(step), hp)
        if k in CHECKPOINTS:
            checkpoints[str(k)] = summary(params, initial)
    return checkpoints


# ---------------------------------------------------------------- optax
def run_optax(**kwargs):
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_platforms", "cpu")
    params = {name: jnp.asarray(stream(i, 0, shape)) for i, (name, shape) in enumerate(PARAMS)}
    initial = [np.asarray(params[name]) for name, _ in PARAMS]
    opt = optax.adafactor(**kwargs)
    state = opt.init(params)
    checkpoints = {}
    for k in range(1, STEPS + 1):
        grads = {name: jnp.asarray(grad(i, k, shape)) for i, (name, shape) in enumerate(PARAMS)}
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        if k in CHECKPOINTS:
            checkpoints[str(k)] = summary([np.asarray(params[n]) for n, _ in PARAMS], initial)
    return checkpoints


def max_rel(a, b):
    worst = 0.0
    for k in a:
        for name in a[k]:
            for x, y in zip(a[k][name]["samples"], b[k][name]["samples"]):
                worst = max(worst, abs(x - y) / max(abs(y), 1e-2))
    return worst


def main():
    lr = 1e-2
    optax_default = run_optax(learning_rate=lr)
    mine = run_t5x({"a": (DEFAULT_HP, lambda s: lr), "b": (DEFAULT_HP, lambda s: lr)}, 0)
    agreement = max_rel(mine, optax_default)
    print(f"numpy t5x vs optax, default case: max rel diff {agreement:.2e}", file=sys.stderr)
    assert agreement < 1e-6, agreement

    optax_mwd = run_optax(learning_rate=lr, momentum=0.9, weight_decay_rate=1e-3)

    first_step = 1000
    hp_a = dict(DEFAULT_HP, step_offset=first_step, max_parameter_scale=0.5, global_norm_clip_threshold=1.0)
    hp_b = dict(DEFAULT_HP, multiply_by_parameter_scale=False, beta1=0.5, decay_rate=0.7,
                weight_decay_rate=0.1, weight_decay_rate_lr_exponent=1.0)
    t5x_groups = run_t5x({"a": (hp_a, lambda s: lr), "b": (hp_b, lambda s: schedule_rsqrt(s, 1.0, 10))}, first_step)

    json.dump({
        "seed": SEED,
        "steps": STEPS,
        "samples": SAMPLES,
        "params": [{"name": n, "shape": list(s)} for n, s in PARAMS],
        "cases": {
            "optax_default": {"first_step": 0, "checkpoints": optax_default},
            "optax_momentum_wd": {"first_step": 0, "checkpoints": optax_mwd},
            "t5x_groups": {"first_step": first_step, "checkpoints": t5x_groups},
        },
    }, sys.stdout, indent=None, separators=(",", ":"))


if __name__ == "__main__":
    main()
