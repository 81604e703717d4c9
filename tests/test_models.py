import keras
import numpy as np
import pytest
import tensorflow as tf

from oat_tf import ARCHITECTURES, VARIANTS, build_model
from tests.conftest import images

# The paper's input size per network: STL-10 (WRN-40-2) is 96×96, the others 32×32.
IMAGE_SIZE = {"wrn40_2": 96}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_backward_and_keras_file_round_trip(tmp_path, rng, name, variant):
    # A quarter of the channels: the same layers and blocks, a sixteenth of the weights to save and load.
    model = build_model(name, variant, image_size=IMAGE_SIZE.get(name, 32), width_multiplier=0.25)
    batch = 3
    inputs = {"image": images(rng, batch, model.image_size), "lam": np.array([0.0, 0.3, 1.0], "float32")}
    for width in model.widths:
        with tf.GradientTape() as tape:
            logits = model(inputs, width=width, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(np.array([1, 2, 3]), logits, from_logits=True))
        assert logits.shape == (batch, 10)
        grads = tape.gradient(loss, model.trainable_weights)
        used = [g for g in grads if g is not None]
        assert used and all(np.isfinite(np.asarray(g)).all() for g in used)
        assert any(np.any(np.asarray(g)) for g in used)
    # The training calls above moved the BN statistics away from their initial values.
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_config() == model.get_config()
    for width in model.widths:
        np.testing.assert_array_equal(loaded(inputs, width=width), model(inputs, width=width))


def test_variants_have_the_configured_layers():
    plain, oat_bn, oat, oats = (build_model("resnet20", v) for v in ("plain", "oat_bn", "oat", "oats"))
    paths = lambda m: [v.path for v in m.weights]  # noqa: E731
    assert not any("film" in p or "adversarial" in p for p in paths(plain))
    assert any("film" in p for p in paths(oat_bn)) and not any("adversarial" in p for p in paths(oat_bn))
    assert any("adversarial" in p for p in paths(oat)) and any("film" in p for p in paths(oat))
    assert any("adversarial_w0.5" in p for p in paths(oats))
    assert oats.widths == (0.5, 0.75, 1.0) and not plain.conditioned and oat_bn.conditioned


def test_lambda_changes_the_output_of_conditioned_models_only(rng):
    x = images(rng, 2)
    for variant, conditioned in (("plain", False), ("oat_bn", True), ("oat", True)):
        model = build_model("resnet20", variant)
        a = model({"image": x, "lam": np.array([0.1, 0.1], "float32")})
        b = model({"image": x, "lam": np.array([0.9, 0.9], "float32")})
        assert (not np.allclose(a, b, atol=1e-6)) == conditioned, variant


@pytest.mark.parametrize("training", [False, True])
def test_model_routes_lambda_zero_samples_away_from_adversarial_bn(rng, training):
    model = build_model("resnet20", "oat")
    inputs = {"image": images(rng, 6), "lam": np.array([0, 0.2, 0, 1, 0.1, 0], "float32")}
    clean = inputs["lam"] == 0
    bn = [v for v in model.trainable_weights if "/bn/" in v.path]
    for group, foreign in ((clean, "adversarial"), (~clean, "clean")):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.boolean_mask(model(inputs, training=training), group) ** 2)
        grads = tape.gradient(loss, bn)
        foreign_grads = [g for v, g in zip(bn, grads) if foreign in v.path]
        own_grads = [g for v, g in zip(bn, grads) if foreign not in v.path]
        assert foreign_grads and all(g is None or not np.any(np.asarray(g)) for g in foreign_grads)
        assert all(g is not None for g in own_grads) and any(np.any(np.asarray(g)) for g in own_grads)


@pytest.mark.parametrize("training", [False, True])
def test_model_mixed_batch_equals_groups_run_separately(rng, training):
    model = build_model("resnet20", "oats")
    inputs = {"image": images(rng, 8), "lam": np.array([0, 0.2, 0, 1, 0.15, 0, 0.4, 0.3], "float32")}
    clean = inputs["lam"] == 0
    for width in model.widths:
        mixed = np.asarray(model(inputs, width=width, training=training))
        for group in (clean, ~clean):
            part = {k: v[group] for k, v in inputs.items()}
            np.testing.assert_allclose(mixed[group], model(part, width=width, training=training), atol=1e-4)


def test_model_works_inside_tf_function_and_xla(rng):
    model = build_model("resnet20", "oats")
    inputs = {"image": images(rng, 4), "lam": np.array([0, 0.1, 0.5, 1], "float32")}
    compiled = tf.function(lambda x: model(x, width=0.75), jit_compile=True)
    np.testing.assert_allclose(compiled(inputs), model(inputs, width=0.75), atol=1e-4)


@pytest.mark.parametrize("encoding", ["orthogonal", "dct"])
def test_every_conditioning_option_follows_a_float64_policy(rng, encoding):
    """Under Keras's float64 policy every layer computes in float64 (the multi-device exactness test
    needs it), and the result is the float32 network's to float32 precision."""
    options = dict(encoding=encoding, film_form="identity", norm_routing="blend", private_share=0.25,
                   adapter_share=0.25)
    inputs = {"image": images(rng, 4), "lam": np.array([0.0, 0.2, 0.7, 1.0], "float32")}
    keras.config.set_dtype_policy("float64")
    try:
        wide = build_model("resnet20", "oats", width_multiplier=0.25, **options)
        # Perturbed weights, so that the zero-initialized FiLM and adapter layers take part.
        wide.set_weights([w + 0.1 * rng.standard_normal(w.shape) for w in wide.get_weights()])
        logits64 = wide(inputs, width=0.5, training=True)
    finally:
        keras.config.set_dtype_policy("float32")
    narrow = build_model("resnet20", "oats", width_multiplier=0.25, **options)
    narrow.set_weights([w.astype("float32") for w in wide.get_weights()])
    assert logits64.dtype == "float64" and all(w.dtype == "float64" for w in wide.weights)
    np.testing.assert_allclose(np.asarray(logits64), np.asarray(narrow(inputs, width=0.5, training=True)),
                               rtol=1e-4, atol=1e-4)


def test_fake_quantize_changes_training_calls_only(rng):
    # Keras passes `training` down to every convolution without the blocks naming it.
    inputs = {"image": images(rng, 4), "lam": np.array([0.0, 0.2, 1.0, 0.0], "float32")}
    plain = build_model("resnet8", "oats", width_multiplier=0.5)
    quantized = build_model("resnet8", "oats", width_multiplier=0.5, fake_quantize=True)
    for a, b in zip(quantized.weights, plain.weights):
        a.assign(b)
    assert quantized.stem.fake_quantize and quantized.blocks[-1].shortcut.fake_quantize
    for width in quantized.widths:
        np.testing.assert_array_equal(quantized(inputs, width=width), plain(inputs, width=width))
        trained = np.asarray(quantized(inputs, width=width, training=True))
        reference = np.asarray(plain(inputs, width=width, training=True))
        assert 0 < np.abs(trained - reference).max() < 0.2 * np.abs(reference).max()
