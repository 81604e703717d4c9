"""2-D convolution whose active input and output channels shrink with the width factor."""

import keras
from keras import ops

from oat_tf.layers.fake_quantization import fake_quantize_activations, fake_quantize_kernel
from oat_tf.layers.slimming import channels_at, validate_widths, width_index


@keras.saving.register_keras_serializable(package="oat_tf")
class SlimmableConv2D(keras.layers.Layer):
    """Conv2D with one kernel shared by all widths.

    The kernel is built for the full width: (k, k, C_in, filters). An input of
    shape (B, H, W, c_in) with c_in ≤ C_in uses the first c_in input channels; at
    width α the output has the first ⌊α·filters⌋ channels (all `filters` when
    `slim_output=False`). Output (B, H', W', c_out). Build it on a full-width input.
    With `fake_quantize`, training calls see the input and the active kernel rounded as a full-int8
    file rounds them (`oat_tf.layers.fake_quantization`); inference calls compute in float.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        widths=(1.0,),
        slim_output=True,
        use_bias=False,
        kernel_initializer="he_normal",
        fake_quantize=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.widths = validate_widths(widths)
        self.slim_output = bool(slim_output)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.fake_quantize = bool(fake_quantize)

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, int(input_shape[-1]), self.filters), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def output_channels(self, width):
        width_index(self.widths, width)
        return channels_at(width, self.filters) if self.slim_output else self.filters

    def call(self, inputs, width=1.0, training=False):
        c_in, c_out = int(inputs.shape[-1]), self.output_channels(width)
        kernel = self.kernel
        if (c_in, c_out) != tuple(kernel.shape[2:]):
            kernel = kernel[:, :, :c_in, :c_out]
        if self.fake_quantize and training:
            inputs, kernel = fake_quantize_activations(inputs), fake_quantize_kernel(kernel)
        strides = self.strides
        if self.kernel_size == 1 and strides > 1:
            # Same result as a strided 1×1 conv; TF 2.21's oneDNN backprop of strided 1×1
            # convs aborts the process for some shapes (e.g. odd batch, 8 → 16 channels).
            inputs, strides = inputs[:, ::strides, ::strides, :], 1
        outputs = ops.conv(inputs, kernel, strides=strides, padding="same")
        if self.use_bias:
            outputs = outputs + self.bias[:c_out]
        return outputs

    def compute_output_shape(self, input_shape, width=1.0):
        size = lambda n: None if n is None else -(-n // self.strides)  # noqa: E731
        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), self.output_channels(width))

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            widths=list(self.widths),
            slim_output=self.slim_output,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            fake_quantize=self.fake_quantize,
        )
        return config
