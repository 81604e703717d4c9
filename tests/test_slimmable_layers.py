import keras
import numpy as np
import pytest
import tensorflow as tf

from oat_tf.layers import FiLM, SlimmableConv2D, SlimmableDense
from oat_tf.layers.fake_quantization import fake_quantize_activations, fake_quantize_kernel


@pytest.mark.parametrize("kernel_size,strides", [(3, 1), (3, 2), (1, 1), (1, 2)])
def test_full_width_conv_equals_keras_conv(rng, kernel_size, strides):
    x = tf.constant(rng.normal(size=(4, 32, 32, 8)).astype("float32"))
    ours = SlimmableConv2D(16, kernel_size, strides, widths=(0.5, 1.0))
    reference = keras.layers.Conv2D(16, kernel_size, strides, padding="same", use_bias=False)
    ours.build(x.shape), reference.build(x.shape)
    reference.kernel.assign(ours.kernel)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = ours(x), reference(x)
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(tape.gradient(a, x), tape.gradient(b, x), atol=1e-3)
    np.testing.assert_allclose(tape.gradient(a, ours.kernel), tape.gradient(b, reference.kernel), atol=1e-3)


def test_strided_pointwise_conv_backprop_with_odd_batch(rng):
    # tf.nn.conv2d's oneDNN backprop aborts the process on this shape; the layer must not.
    x = tf.constant(rng.normal(size=(3, 32, 32, 8)).astype("float32"))
    layer = SlimmableConv2D(16, 1, 2)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    grad = np.asarray(tape.gradient(y, x))
    assert y.shape == (3, 16, 16, 16)
    assert np.all(grad[:, 1::2] == 0) and np.any(grad[:, ::2, ::2])


def test_slim_conv_uses_leading_channels(rng):
    layer = SlimmableConv2D(16, 3, widths=(0.5, 1.0))
    full = rng.normal(size=(2, 8, 8, 8)).astype("float32")
    layer.build(full.shape)
    half = layer(full[..., :4], width=0.5)
    assert half.shape == (2, 8, 8, 8)
    expected = tf.nn.conv2d(full[..., :4], np.asarray(layer.kernel)[:, :, :4, :8], 1, "SAME")
    np.testing.assert_allclose(half, expected, atol=1e-4)


def test_dense_head_keeps_all_outputs(rng):
    layer = SlimmableDense(10, widths=(0.5, 1.0))
    layer.build((None, 64))
    x = rng.normal(size=(2, 32)).astype("float32")
    out = layer(x, width=0.5)
    np.testing.assert_allclose(out, x @ np.asarray(layer.kernel)[:32] + np.asarray(layer.bias), atol=1e-5)


def test_film_is_an_affine_map_per_sample_and_channel(rng):
    layer = FiLM(8, widths=(0.5, 1.0))
    h = rng.normal(size=(3, 4, 4, 8)).astype("float32")
    code = rng.normal(size=(3, 16)).astype("float32")
    out = np.asarray(layer(h, code))
    gamma, beta = (np.asarray(t) for t in layer.modulation(code))
    np.testing.assert_allclose(out, h * gamma[:, None, None] + beta[:, None, None], atol=1e-5)
    # Reference formula: leaky(split(W2·leaky(W1·code + b1) + b2)).
    leaky = lambda t: np.where(t > 0, t, 0.01 * t)  # noqa: E731
    hidden = leaky(code @ np.asarray(layer.hidden_kernel) + np.asarray(layer.hidden_bias))
    np.testing.assert_allclose(gamma, leaky(hidden @ np.asarray(layer.gamma_kernel) + layer.gamma_bias), atol=1e-5)
    # Width 0.5 uses the first 4 channels of γ and β computed from the first 8 hidden units.
    g_half, b_half = (np.asarray(t) for t in layer.modulation(code, width=0.5))
    assert g_half.shape == (3, 4)
    hidden_half = leaky(code @ np.asarray(layer.hidden_kernel)[:, :8] + np.asarray(layer.hidden_bias)[:8])
    np.testing.assert_allclose(
        b_half, leaky(hidden_half @ np.asarray(layer.beta_kernel)[:8, :4] + np.asarray(layer.beta_bias)[:4]), atol=1e-5
    )


def test_fake_quantization_rounds_to_int8_levels_with_straight_through_gradients(rng):
    x = tf.constant(rng.normal(size=(4, 6, 6, 8)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fake_quantize_activations(x)
    step = float(tf.reduce_max(x) - tf.reduce_min(x)) / 255
    assert len(np.unique(np.asarray(y))) <= 256
    assert np.abs(np.asarray(y - x)).max() <= 0.5 * step * 1.01 and np.abs(np.asarray(y - x)).max() > 0.1 * step
    # Straight through, except at an extreme that the zero-exact (nudged) range leaves just outside.
    gradient = np.asarray(tape.gradient(y, x))
    assert set(np.unique(gradient)) <= {0.0, 1.0} and (gradient == 0).sum() <= 2
    kernel = tf.constant(rng.normal(size=(3, 3, 8, 5)).astype("float32") * np.arange(1, 6, dtype="float32"))
    rounded = np.asarray(fake_quantize_kernel(kernel))
    bound = np.abs(np.asarray(kernel)).max(axis=(0, 1, 2))
    codes = rounded / (bound / 127)  # per output channel: integers in −127 … 127
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)
    assert np.abs(codes).max() <= 127 + 1e-3 and np.abs(rounded - np.asarray(kernel)).max() <= (bound / 254).max() * 1.01


def test_fake_quantize_acts_in_training_only(rng):
    x = tf.constant(rng.uniform(size=(2, 8, 8, 8)).astype("float32"))
    plain, quantized = (SlimmableConv2D(8, 3, widths=(0.5, 1.0), fake_quantize=q) for q in (False, True))
    plain.build(x.shape), quantized.build(x.shape)
    for a, b in zip(quantized.weights, plain.weights):
        a.assign(b)
    half = x[..., :4]
    np.testing.assert_array_equal(quantized(half, width=0.5), plain(half, width=0.5))
    trained, reference = quantized(half, width=0.5, training=True), plain(half, width=0.5, training=True)
    error = np.abs(np.asarray(trained - reference))
    assert 0 < error.max() < 0.05 * np.abs(np.asarray(reference)).max()
    assert SlimmableConv2D.from_config(quantized.get_config()).fake_quantize
