"""A low-rank convolution added to a layer's output, one half for each end of the λ range."""

import keras
from keras import ops

from oat_tf.layers.slimmable_conv2d import SlimmableConv2D
from oat_tf.layers.slimming import validate_widths


@keras.saving.register_keras_serializable(package="oat_tf")
class LambdaAdapter(keras.layers.Layer):
    """Δ(x, λ) = Up(g(λ) · Down(x)): two rank-r branches, the clean one weighted by 1 − λ and the
    robust one by λ, added to the output of the convolution it adapts.

    Down is a k×k convolution (stride `strides`) to 2r channels, Up a 1×1 convolution to `filters`
    channels, zero-initialized so that the adapted network starts as the plain one. Inputs: x of
    shape (B, H, W, c_in) and λ of shape (B,); output (B, H', W', ⌊α·filters⌋) at width α (Down
    keeps all 2r channels at every width). Rank r costs about (9 + 1)·2r/(9·filters) of a 3×3
    convolution's multiply-adds.
    """

    def __init__(self, filters, kernel_size, strides=1, rank=1, widths=(1.0,), **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = int(filters), int(kernel_size), int(strides)
        self.rank = int(rank)
        if self.rank < 1:
            raise ValueError(f"an adapter's rank must be at least 1, got {rank}.")
        self.widths = validate_widths(widths)
        self.down = SlimmableConv2D(2 * self.rank, kernel_size, strides, widths, slim_output=False, name="down")
        self.up = SlimmableConv2D(filters, 1, 1, widths, kernel_initializer="zeros", name="up")

    def build(self, inputs_shape, lam_shape=None):
        self.down.build(inputs_shape)
        self.up.build(self.down.compute_output_shape(inputs_shape))

    def call(self, inputs, lam, width=1.0):
        lam = ops.reshape(ops.cast(lam, self.compute_dtype), (-1, 1, 1, 1))
        low = self.down(inputs, width=width)
        clean, robust = low[..., : self.rank], low[..., self.rank :]
        return self.up(ops.concatenate([(1.0 - lam) * clean, lam * robust], axis=-1), width=width)

    def compute_output_shape(self, inputs_shape, lam_shape=None, width=1.0):
        return self.up.compute_output_shape(self.down.compute_output_shape(inputs_shape), width)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, rank=self.rank,
                      widths=list(self.widths))
        return config
