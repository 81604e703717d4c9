import keras
import numpy as np
import pytest
import tensorflow as tf

from oat_tf.layers import DualBatchNorm


def make(dual=True, widths=(1.0,), channels=8):
    layer = DualBatchNorm(channels, widths, dual=dual)
    layer.build((None, 4, 4, channels))
    rng = np.random.default_rng(1)
    for var in layer.trainable_weights:  # non-trivial affine parameters
        var.assign(rng.normal(1.0, 0.5, var.shape).astype("float32"))
    for per_route in layer.params:
        for _, _, mean, var in per_route:
            mean.assign(rng.normal(0, 1, mean.shape).astype("float32"))
            var.assign(rng.uniform(0.5, 2, var.shape).astype("float32"))
    return layer


def stats(layer):
    return [np.asarray(v).copy() for v in layer.non_trainable_weights]


@pytest.mark.parametrize("training", [False, True])
def test_mixed_batch_equals_groups_run_separately(rng, training):
    x = rng.normal(2.0, 3.0, (10, 4, 4, 8)).astype("float32")
    adv = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1], bool)
    mixed_layer, split_layer = make(), make()
    mixed = np.asarray(mixed_layer(x, adv, training=training))
    clean = np.asarray(split_layer(x[~adv], adv[~adv], training=training))
    attacked = np.asarray(split_layer(x[adv], adv[adv], training=training))
    np.testing.assert_allclose(mixed[~adv], clean, atol=1e-5)
    np.testing.assert_allclose(mixed[adv], attacked, atol=1e-5)
    # Each group updated its own moving statistics exactly once, as in the separate runs.
    for a, b in zip(stats(mixed_layer), stats(split_layer)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_training_normalizes_each_group_with_its_own_statistics(rng):
    layer = DualBatchNorm(8, dual=True)
    clean = rng.normal(0.0, 1.0, (6, 4, 4, 8)).astype("float32")
    attacked = rng.normal(5.0, 4.0, (6, 4, 4, 8)).astype("float32")
    out = np.asarray(layer(np.concatenate([clean, attacked]), np.repeat([False, True], 6), training=True))
    for group in (out[:6], out[6:]):  # gamma = 1, beta = 0: zero mean, unit variance per group
        np.testing.assert_allclose(group.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
        np.testing.assert_allclose(group.var(axis=(0, 1, 2)), 1.0, atol=1e-3)


def test_empty_group_leaves_its_statistics_untouched(rng):
    layer = make()
    before = stats(layer)
    x = rng.normal(size=(4, 4, 4, 8)).astype("float32")
    out = layer(x, np.ones(4, bool), training=True)
    assert np.isfinite(np.asarray(out)).all()
    after = stats(layer)
    clean_names = [i for i, v in enumerate(layer.non_trainable_weights) if "clean" in v.path]
    adv_names = [i for i, v in enumerate(layer.non_trainable_weights) if "adversarial" in v.path]
    for i in clean_names:
        np.testing.assert_array_equal(before[i], after[i])
    assert any(not np.allclose(before[i], after[i]) for i in adv_names)


def test_blended_samples_in_a_batch_without_clean_ones_use_the_clean_moving_statistics(rng):
    # An adversarial pass of λ ∈ {0.2, …, 1} samples has no λ = 0 sample: BN_c's share of a blended
    # sample is normalized by BN_c's moving statistics (an empty batch's would scale by 1/√ε).
    layer = make()
    x = rng.normal(2.0, 3.0, (6, 4, 4, 8)).astype("float32")
    weights = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 0.2], "float32")
    gamma, beta, moving_mean, moving_variance = (np.asarray(v) for v in layer.params[0][0])
    out = np.asarray(layer(x, weights, training=True))
    batch_adv = np.asarray(layer(x, np.ones(6, "float32"), training=True))
    clean = (x - moving_mean) / np.sqrt(moving_variance + layer.epsilon) * gamma + beta
    w = weights[:, None, None, None]
    np.testing.assert_allclose(out, (1 - w) * clean + w * batch_adv, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("training", [False, True])
def test_each_route_depends_only_on_its_own_variables(rng, training):
    layer = make()
    x = tf.constant(rng.normal(size=(6, 4, 4, 8)).astype("float32"))
    adv = np.array([0, 0, 1, 1, 0, 1], bool)
    for group, other in ((~adv, "adversarial"), (adv, "clean")):
        with tf.GradientTape() as tape:
            out = layer(x, adv, training=training)
            loss = tf.reduce_sum(tf.boolean_mask(out, group) ** 2)
        variables = layer.trainable_weights
        grads = tape.gradient(loss, variables)
        for var, grad in zip(variables, grads):
            if other in var.path:
                assert grad is None or not np.any(np.asarray(grad)), var.path
            else:
                assert grad is not None and np.any(np.asarray(grad)), var.path


def test_plain_route_matches_keras_batch_norm(rng):
    x = rng.normal(1.0, 2.0, (8, 4, 4, 8)).astype("float32")
    ours = DualBatchNorm(8, dual=False)
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    np.testing.assert_allclose(ours(x, training=True), reference(x, training=True), atol=1e-4)
    np.testing.assert_allclose(ours.non_trainable_weights[0], reference.moving_mean, atol=1e-5)
    # Moving variance follows PyTorch (unbiased batch variance), unlike Keras's biased one.
    expected_variance = 0.9 + 0.1 * x.reshape(-1, 8).var(axis=0, ddof=1)
    np.testing.assert_allclose(ours.non_trainable_weights[1], expected_variance, rtol=1e-5)


def test_switchable_widths_have_independent_statistics(rng):
    layer = make(widths=(0.5, 1.0))
    x_half = rng.normal(size=(4, 4, 4, 4)).astype("float32")
    full_before = stats(layer)
    out = layer(x_half, np.zeros(4, bool), width=0.5, training=True)
    assert out.shape == x_half.shape
    changed = [not np.array_equal(a, b) for a, b in zip(full_before, stats(layer))]
    paths = [v.path for v in layer.non_trainable_weights]
    assert all(("w0.5" in p and "clean" in p) == c for p, c in zip(paths, changed)), list(zip(paths, changed))
    with pytest.raises(ValueError, match=r"\[0.5, 1.0\]"):
        layer(x_half, np.zeros(4, bool), width=0.25)


def test_synchronized_statistics_under_mirrored_strategy(rng, two_replicas):
    strategy = two_replicas
    x = rng.normal(0.0, 2.0, (8, 4, 4, 8)).astype("float32")
    x[4:] += 3.0  # replicas see different data: local statistics would differ
    adv = np.array([0, 1, 0, 1, 1, 0, 1, 0], bool)
    single = make()
    expected = np.asarray(single(x, adv, training=True))
    with strategy.scope():
        synced = make()
        synced.synchronized = True
    dataset = tf.data.Dataset.from_tensor_slices((x, adv)).batch(8)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    result = strategy.run(tf.function(lambda a, b: synced(a, b, training=True)), args=batch)
    got = np.concatenate([np.asarray(t) for t in strategy.experimental_local_results(result)])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    for a, b in zip(stats(single), stats(synced)):
        np.testing.assert_allclose(a, b, atol=1e-5)
