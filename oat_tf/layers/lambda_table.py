"""Values that are piecewise linear in λ, stored at knots: the export form of a network's λ path."""

import keras
import numpy as np
from keras import ops

from oat_tf.layers.slimming import validate_widths, width_index

TABLE_STORAGES = ("float32", "int8")


@keras.saving.register_keras_serializable(package="oat_tf")
class LambdaTable(keras.layers.Layer):
    """v(λ) read from a table per width: its own row at λ = 0, linear interpolation between knots above.

    For width i the layer holds knots 0 = t_0 < … < t_{K−1} = 1 (`knots[i]`), a (K, D_i) table of
    v(λ) at the knots for λ > 0, and a (D_i,) row for λ = 0, so that a value may jump between
    λ = 0 and λ > 0 (the two batch-norm routes). Input: λ of shape (B,) (clamped to [0, 1]);
    output: (B, D_i) at width `widths[i]`. The lookup gathers two rows per sample, so its cost does
    not grow with K.

    `storage="int8"` keeps the table as int8 codes q with a float scale and offset per column,
    v = offset + scale·q (the zero row stays float32): a quarter of the bytes, off by at most half a
    column's scale.
    """

    def __init__(self, knots, dims, widths=(1.0,), storage="float32", **kwargs):
        super().__init__(**kwargs)
        self.widths = validate_widths(widths)
        self.knots = [[float(t) for t in k] for k in knots]
        self.dims = [int(d) for d in dims]
        if storage not in TABLE_STORAGES:
            raise ValueError(f"unknown table storage {storage!r}; choose one of {list(TABLE_STORAGES)}.")
        self.storage = storage
        if not len(self.knots) == len(self.dims) == len(self.widths):
            raise ValueError(f"one knot list and one dimension per width ({len(self.widths)}), "
                             f"got {len(self.knots)} and {len(self.dims)}.")
        for k in self.knots:
            if len(k) < 2 or k[0] != 0.0 or k[-1] != 1.0 or np.any(np.diff(k) <= 0):
                raise ValueError(f"knots must rise strictly from 0 to 1, got {k}.")

    def build(self, input_shape=None):
        self.tables = [self.add_weight(name=f"table_{i}", shape=(len(k), d), initializer="zeros", trainable=False,
                                       dtype=self.storage)
                       for i, (k, d) in enumerate(zip(self.knots, self.dims))]
        if self.storage == "int8":
            self.column_scales, self.column_offsets = (
                [self.add_weight(name=f"column_{kind}_{i}", shape=(d,), initializer=init, trainable=False)
                 for i, d in enumerate(self.dims)] for kind, init in (("scale", "ones"), ("offset", "zeros")))
        self.zero_rows = [self.add_weight(name=f"zero_row_{i}", shape=(d,), initializer="zeros", trainable=False)
                          for i, d in enumerate(self.dims)]

    def call(self, lam, width=1.0):
        i = width_index(self.widths, width)
        knots = ops.convert_to_tensor(np.asarray(self.knots[i], np.float32))
        lam = ops.clip(ops.cast(ops.reshape(lam, (-1,)), "float32"), 0.0, 1.0)
        # Index of the interval [t_j, t_j+1] holding λ: how many inner knots lie at or below it.
        below = ops.cast(ops.expand_dims(lam, 1) >= knots[None, 1:-1], "int32")
        j = ops.sum(below, axis=1)
        lo, hi = ops.take(knots, j), ops.take(knots, j + 1)
        t = ops.expand_dims((lam - lo) / (hi - lo), 1)
        start, end = (ops.cast(ops.take(self.tables[i], rows, axis=0), "float32") for rows in (j, j + 1))
        values = start + t * (end - start)
        if self.storage == "int8":  # the codes are affine in the values, so interpolating them first is exact
            values = values * self.column_scales[i] + self.column_offsets[i]
        return ops.where(ops.expand_dims(lam > 0.0, 1), values, self.zero_rows[i][None, :])

    def compute_output_shape(self, input_shape, width=1.0):
        return (input_shape[0], self.dims[width_index(self.widths, width)])

    def get_config(self):
        config = super().get_config()
        config.update(knots=self.knots, dims=self.dims, widths=list(self.widths), storage=self.storage)
        return config
