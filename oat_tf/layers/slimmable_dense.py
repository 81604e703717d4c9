"""Fully connected layer whose active input (and optionally output) units shrink with the width."""

import keras
from keras import ops

from oat_tf.layers.slimming import channels_at, validate_widths, width_index


@keras.saving.register_keras_serializable(package="oat_tf")
class SlimmableDense(keras.layers.Layer):
    """Dense layer with one kernel of shape (D_in, units) shared by all widths.

    An input (B, d_in) with d_in ≤ D_in uses the first d_in rows of the kernel. The
    output is (B, units), or (B, ⌊α·units⌋) at width α when `slim_output=True`
    (a classifier head keeps `slim_output=False`). Build it on a full-width input.
    """

    def __init__(self, units, widths=(1.0,), slim_output=False, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.widths = validate_widths(widths)
        self.slim_output = bool(slim_output)

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(fan_in, self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def output_units(self, width):
        width_index(self.widths, width)
        return channels_at(width, self.units) if self.slim_output else self.units

    def call(self, inputs, width=1.0):
        d_in, d_out = int(inputs.shape[-1]), self.output_units(width)
        return ops.matmul(inputs, self.kernel[:d_in, :d_out]) + self.bias[:d_out]

    def compute_output_shape(self, input_shape, width=1.0):
        return (input_shape[0], self.output_units(width))

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, widths=list(self.widths), slim_output=self.slim_output)
        return config
