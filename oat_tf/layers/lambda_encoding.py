"""Encoding of the per-sample robustness weight λ into the vector that drives FiLM."""

import math

import keras
import numpy as np
from keras import ops

from oat_tf.lambdas import S1, validate_grid

ENCODINGS = ("orthogonal", "onehot", "dct", "scalar")


def orthogonal_rows(num_rows, dim, seed):
    """First `num_rows` rows of a random orthogonal `dim`×`dim` matrix (QR of a seeded Gaussian)."""
    gaussian = np.random.default_rng(seed).standard_normal((dim, dim))
    q, r = np.linalg.qr(gaussian)
    q = q * np.sign(np.diag(r))  # makes the factorization unique
    return q[:num_rows].astype("float32")


@keras.saving.register_keras_serializable(package="oat_tf")
class LambdaEncoding(keras.layers.Layer):
    """Maps λ of shape (B,) in [0, 1] to codes of shape (B, output_dim).

    `orthogonal` (the paper's): λ on the training grid maps to its own row of a
    seeded random orthogonal matrix; λ between two grid points maps to the linear
    interpolation of their rows, so any λ in [0, 1] is a valid input. `onehot` is
    the same with the identity matrix. The matrix is a non-trainable weight, saved
    with the model and restored from the file on load. `dct` gives
    cos(π·j·λ) for j = 0..dim−1; `scalar` passes λ itself as a (B, 1) code.
    Outside the grid's range the code of the nearest end point is used.
    """

    def __init__(self, kind="orthogonal", dim=128, grid=S1, seed=0, **kwargs):
        super().__init__(**kwargs)
        if kind not in ENCODINGS:
            raise ValueError(f"unknown λ encoding {kind!r}; choose one of {list(ENCODINGS)}.")
        self.kind = kind
        self.grid = validate_grid(grid)
        self.dim = int(dim)
        self.seed = int(seed)
        if kind == "orthogonal" and self.dim < len(self.grid):
            raise ValueError(
                f"orthogonal λ encoding needs dim ≥ the grid size ({len(self.grid)}), got dim={self.dim}."
            )

    @property
    def output_dim(self):
        return {"orthogonal": self.dim, "onehot": len(self.grid), "dct": self.dim, "scalar": 1}[self.kind]

    def build(self, input_shape=None):
        if self.kind in ("orthogonal", "onehot"):
            rows = (
                orthogonal_rows(len(self.grid), self.dim, self.seed)
                if self.kind == "orthogonal"
                else np.eye(len(self.grid), dtype="float32")
            )
            self.codes = self.add_weight(
                name="codes",
                shape=rows.shape,
                initializer=keras.initializers.Constant(rows),
                trainable=False,
            )
            self._set_hat_functions()

    def _set_hat_functions(self):
        # Piecewise-linear "hat" weight of each grid point: w_k(λ) = clip(min(rise_k, fall_k), 0, 1),
        # with rise/fall the lines through the neighbouring grid points. Only elementwise ops, so
        # the graph converts to builtin TFLite ops; the weights sum to 1 and are one-hot on the grid.
        g = np.asarray(self.grid, dtype="float64")
        k = len(g)
        rise_slope, rise_offset = np.zeros(k), np.ones(k)
        fall_slope, fall_offset = np.zeros(k), np.ones(k)
        for i in range(1, k):
            rise_slope[i] = 1.0 / (g[i] - g[i - 1])
            rise_offset[i] = -g[i - 1] * rise_slope[i]
        for i in range(k - 1):
            fall_slope[i] = -1.0 / (g[i + 1] - g[i])
            fall_offset[i] = -g[i + 1] * fall_slope[i]
        self._hat = (rise_slope, rise_offset, fall_slope, fall_offset)

    def interpolation_weights(self, lam):
        """(B, K) weights of the K grid codes for λ of shape (B,)."""
        rise_slope, rise_offset, fall_slope, fall_offset = (v.astype(self.compute_dtype) for v in self._hat)
        lam = lam[:, None]
        rise = lam * rise_slope + rise_offset
        fall = lam * fall_slope + fall_offset
        return ops.clip(ops.minimum(rise, fall), 0.0, 1.0)

    def call(self, lam):
        lam = ops.reshape(ops.cast(lam, self.compute_dtype), (-1,))
        if self.kind == "scalar":
            return lam[:, None]
        if self.kind == "dct":
            frequencies = np.arange(self.dim, dtype=self.compute_dtype) * math.pi
            return ops.cos(lam[:, None] * frequencies)
        if self.kind == "onehot":  # its codes are the identity
            return self.interpolation_weights(lam)
        return ops.matmul(self.interpolation_weights(lam), self.codes)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, dim=self.dim, grid=list(self.grid), seed=self.seed)
        return config
