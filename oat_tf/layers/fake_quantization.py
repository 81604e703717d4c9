"""Int8 fake quantization (round to int8, then back to float) as a full-int8 TFLite file rounds, for training.

Quantization-aware fine-tuning: a network trained through these roundings learns decisions that
survive them, so its int8 file agrees more often with its float file. Gradients pass straight
through the rounding; the ranges are not trained.
"""

from keras import ops, quantizers

_TINY = 1e-8  # keeps a range of width zero (an all-zero tensor or kernel channel) valid


def fake_quantize_activations(x):
    """`x` on 256 levels spanning its own range (widened to hold 0): a per-tensor asymmetric int8
    activation, as the converter's calibrated ranges quantize it. Any shape; same shape out."""
    low = ops.stop_gradient(ops.minimum(ops.min(x), 0.0))
    high = ops.stop_gradient(ops.maximum(ops.max(x), low + _TINY))
    return quantizers.fake_quant_with_min_max_vars(x, low, high, num_bits=8)


def fake_quantize_kernel(kernel):
    """`kernel` of shape (…, C_out) on 255 levels in ±max|w| per output channel: int8 weights per
    channel with zero point 0 and codes −127 … 127, as TFLite stores convolution kernels."""
    bound = ops.max(ops.abs(kernel), axis=tuple(range(len(kernel.shape) - 1)))
    bound = ops.stop_gradient(ops.maximum(bound, _TINY))
    return quantizers.fake_quant_with_min_max_vars(kernel, -bound, bound, num_bits=8, narrow_range=True, axis=-1)
