"""Per-sample λ for a training batch."""

import math

import numpy as np
import tensorflow as tf

from oat_tf.lambdas import validate_grid


def clean_count(batch_size, lam_set, clean_share=None):
    """λ = 0 samples per batch: ⌈B/|S|⌉ as in the reference code, or round(clean_share·B) (at
    least one clean and one other sample) when `clean_share` is given; 0 when 0 ∉ S, B when S = {0}."""
    if 0.0 not in lam_set:
        return 0
    if all(v == 0.0 for v in lam_set):
        return batch_size
    if clean_share is None:
        return math.ceil(batch_size / len(lam_set))
    return min(max(int(round(clean_share * batch_size)), 1), batch_size - 1)


class LambdaSampler:
    """Draws λ for a batch of `batch_size`: the first `clean_count` samples get λ = 0 (a share
    `clean_share` of the batch, default ⌈B/|S|⌉ as the reference code), the rest i.i.d. from
    the non-zero values of `lam_set` (or uniform in (0, 1] with `continuous=True`).

    The fixed clean share keeps the clean/adversarial group sizes static, which XLA needs.
    Draws are stateless, keyed by `seed` (a (2,) int tensor), so a resumed run redraws the same λ.
    """

    def __init__(self, lam_set, batch_size, continuous=False, clean_share=None):
        self.lam_set = validate_grid(lam_set, "lam_set")
        self.batch_size = int(batch_size)
        self.continuous = bool(continuous)
        self.num_clean = clean_count(self.batch_size, self.lam_set, clean_share)
        self.nonzero = np.asarray([v for v in self.lam_set if v > 0], np.float32)

    @property
    def clean_rows(self):
        """How many leading samples of a batch have a clean loss term ((1 − λ) > 0): all of them, or
        only the λ = 0 samples when every other draw is λ = 1 (S = {1} or S = {0, 1})."""
        if not self.continuous and set(self.nonzero.tolist()) == {1.0}:
            return self.num_clean
        return self.batch_size

    @property
    def num_adversarial(self):
        return self.batch_size - self.num_clean

    def __call__(self, seed):
        n = self.num_adversarial
        if n == 0:
            return tf.zeros([self.batch_size])
        if self.continuous:
            # Uniform in (0, 1]: 1 − U[0, 1).
            drawn = 1.0 - tf.random.stateless_uniform([n], seed)
        else:
            index = tf.random.stateless_uniform([n], seed, 0, len(self.nonzero), dtype=tf.int32)
            drawn = tf.gather(self.nonzero, index)
        return tf.concat([tf.zeros([self.num_clean]), drawn], axis=0)
