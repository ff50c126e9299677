#!/usr/bin/env python3
"""Golden span corruption from T5 itself (tests/span_corruption_golden.rs reads it).

Run (CPU only, a minute; TensorFlow, t5 and seqio from PyPI, their other dependencies
only as far as `t5.data.preprocessors` imports them):

    python3 -m venv /root/.cache/hint/seqio-venv
    /root/.cache/hint/seqio-venv/bin/pip install tensorflow-cpu gin-config absl-py sentencepiece
    /root/.cache/hint/seqio-venv/bin/pip install --no-deps t5 seqio   # then each missing import
    /root/.cache/hint/seqio-venv/bin/python crates/hint-data/scripts/span_corruption_golden.py \
        > crates/hint-data/tests/data/span_corruption_golden.json

Cases:
* `uniform`: `tf.random.stateless_uniform` for int64 seed pairs (wide and negative), and
  `uniform_int` its int32 form (`select_random_chunk`'s draw);
* `helper`: `t5.data.preprocessors.random_spans_helper` (one sentinel per span);
* `masks`: `random_spans_noise_mask` over lengths from 1 to 1137, three densities and span
  lengths, several seed pairs;
* `denoise`: the body of t5's `denoise` as `span_corruption` calls it — the mask from
  seeds[0:2], inputs by `noise_span_to_unique_sentinel`, targets by
  `nonnoise_span_to_unique_sentinel` — for a 32,100-id vocabulary (sentinels from 32099 down);
* `segments`: `reduce_concat_tokens` (128 texts) and `split_tokens` as `span_corruption`
  chains them, for documents given as token ids.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from t5.data import preprocessors as t5p  # noqa: E402

VOCAB_SIZE = 32100


class Vocab:
    """What `sentinel_id` reads of a vocabulary."""

    vocab_size = VOCAB_SIZE


def seeds_for(case, pairs):
    """Deterministic int64 seed pairs, wide ones and negative ones included."""
    rng = np.random.RandomState(1000 + case)
    out = []
    for _ in range(pairs):
        a = int(rng.randint(-(2**62), 2**62, dtype=np.int64))
        b = int(rng.randint(-(2**31), 2**31, dtype=np.int64))
        out.append([a, b])
    return out


def mask_of(length, density, mean, seeds):
    mask = t5p.random_spans_noise_mask(
        length, density, seeds=tf.constant(seeds, tf.int64), mean_noise_span_length=mean
    )
    return "".join("1" if m else "0" for m in mask.numpy().tolist())


def main():
    out = {"vocab_size": VOCAB_SIZE}
    out["uniform"] = []
    for seed in [[0, 0], [1, 2], [-5, 123456789], [2**40 + 3, -1], [2**62 + 11, -(2**61)]]:
        values = tf.random.stateless_uniform([11], seed=tf.constant(seed, tf.int64)).numpy()
        out["uniform"].append({"seed": seed, "values": [float(v) for v in values]})
    out["uniform_int"] = []
    for case, maxval in enumerate([1, 2, 3, 7, 1000, 2**31 - 1]):
        seed = seeds_for(900 + case, 1)[0]
        value = tf.random.stateless_uniform(
            [], seed=tf.constant(seed, tf.int64), minval=0, maxval=maxval, dtype=tf.int32
        ).numpy()
        out["uniform_int"].append({"seed": seed, "maxval": maxval, "value": int(value)})
    out["helper"] = []
    for density, mean in [(0.15, 3.0), (0.5, 3.0), (0.3, 5.0)]:
        for inputs_length in [4, 8, 17, 32, 64, 100, 512, 626, 1024]:
            tokens, targets = t5p.random_spans_helper(
                inputs_length=inputs_length,
                noise_density=density,
                mean_noise_span_length=mean,
                extra_tokens_per_span_inputs=1,
                extra_tokens_per_span_targets=1,
            )
            out["helper"].append(
                {"inputs_length": inputs_length, "density": density, "mean": mean,
                 "tokens_length": int(tokens), "targets_length": int(targets)}
            )
    out["masks"] = []
    case = 0
    for density, mean in [(0.15, 3.0), (0.5, 3.0), (0.3, 5.0)]:
        for length in [1, 2, 3, 5, 10, 17, 33, 70, 100, 257, 568, 1137]:
            for seeds in [seeds_for(case, 2), [[1, 2], [3, 4]]]:
                case += 1
                out["masks"].append(
                    {"length": length, "density": density, "mean": mean, "seeds": seeds,
                     "mask": mask_of(length, density, mean, seeds)}
                )
    out["denoise"] = []
    rng = np.random.RandomState(7)
    for case, length in enumerate([3, 12, 40, 114, 568]):
        tokens = rng.randint(3, 32000, size=length).astype(np.int32)
        seeds = seeds_for(500 + case, 6)
        tf_seeds = [tf.constant(s, tf.int64) for s in seeds]
        mask = t5p.random_spans_noise_mask(
            tf.size(tokens), 0.15, seeds=tf_seeds[:2], mean_noise_span_length=3.0
        )
        inputs = t5p.noise_span_to_unique_sentinel(tokens, mask, Vocab(), tf_seeds[2:4])
        targets = t5p.nonnoise_span_to_unique_sentinel(tokens, mask, Vocab(), tf_seeds[4:6])
        out["denoise"].append(
            {"tokens": tokens.tolist(), "seeds": seeds[:2],
             "inputs": inputs.numpy().tolist(), "targets": targets.numpy().tolist()}
        )
    out["segments"] = []
    docs = [rng.randint(3, 32000, size=int(n)).tolist() for n in rng.randint(1, 60, size=300)]
    tokens_length, _ = t5p.random_spans_helper(
        inputs_length=64, noise_density=0.15, mean_noise_span_length=3.0,
        extra_tokens_per_span_inputs=1, extra_tokens_per_span_targets=1,
    )
    ds = tf.data.Dataset.from_generator(
        lambda: ({"targets": np.array(d, np.int32)} for d in docs),
        output_signature={"targets": tf.TensorSpec([None], tf.int32)},
    )
    ds = t5p.reduce_concat_tokens(ds, feature_key="targets", batch_size=128)
    ds = t5p.split_tokens(ds, feature_key="targets", min_tokens_per_segment=None,
                          max_tokens_per_segment=tokens_length)
    out["segments"].append(
        {"docs": docs, "texts_per_example": 128, "inputs_length": 64,
         "segments": [x["targets"].tolist() for x in ds.as_numpy_iterator()]}
    )
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
