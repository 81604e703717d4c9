import keras
import numpy as np
import pytest
import tensorflow as tf

from oat_tf import OATNetwork, build_model
from oat_tf.attacks import APGD, LinfPGD, _apgd_checkpoints, build_attack, default_seeds, uniform_noise
from tests.conftest import images

ATTACKS = ["fgsm", "pgd7", "pgd20", "pgd5-cw", "pgd7-ref", "mifgsm", "apgd-ce", "apgd-t"]


def quick(name, **kwargs):
    """The named attack shortened (at most 4 PGD or 8 APGD steps), without XLA compile time, for tests that
    check invariants: the unrolled 20-step graph alone takes a minute to build."""
    attack = build_attack(name, jit_compile=False, **kwargs)
    if isinstance(attack, APGD):
        attack.steps, attack.targets = 8, min(attack.targets, 2)
    else:
        attack.steps = min(attack.steps, 4)
    return attack


def accuracy(model, x, y, lam, width=1.0):
    logits = model({"image": x, "lam": lam}, width=width, training=False)
    return float(np.mean(np.argmax(logits, axis=1) == y))


@pytest.fixture(scope="module")
def oats_model():
    keras.utils.set_random_seed(1)
    return build_model("resnet8", "oats", width_multiplier=0.5)


@pytest.mark.parametrize("name", ATTACKS)
def test_adversarial_images_stay_in_the_ball_and_the_box(oats_model, rng, name):
    x = images(rng, 6)
    x[0] = 0.0  # corners of the box make the projection onto [0, 1] matter
    x[1] = 1.0
    y = np.arange(6) % 10
    lam = np.array([0, 0.1, 0.2, 0.4, 1, 0.7], "float32")
    eps = 8 / 255
    for width in (0.5, 1.0):
        x_adv = np.asarray(quick(name)(oats_model, x, y, lam, width=width))
        assert x_adv.shape == x.shape
        assert np.abs(x_adv - x).max() <= eps + 1e-6
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        assert np.abs(x_adv - x).max() > eps / 4  # it moved


@pytest.mark.parametrize("name", ATTACKS)
def test_zero_epsilon_gives_the_clean_images(oats_model, rng, name):
    x, y, lam = images(rng, 4), np.arange(4), np.array([0, 0.3, 1, 0], "float32")
    x_adv = quick(name, epsilon=0.0)(oats_model, x, y, lam)
    np.testing.assert_array_equal(x_adv, x)


class LinearSoftmax(keras.Model):
    """z = W·vec(x) + b: a model with a closed-form input gradient, in the project's call convention."""

    def __init__(self, weights, bias):
        super().__init__()
        self.w, self.b = tf.constant(weights), tf.constant(bias)

    def call(self, inputs, width=1.0, training=False):
        x = tf.reshape(inputs["image"], (tf.shape(inputs["image"])[0], -1))
        return tf.matmul(x, self.w) + self.b


def analytic_gradient(w, b, x, y):
    z = x.reshape(len(x), -1) @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return (p @ w.T).reshape(x.shape)


def linear_problem(rng, batch):
    """(model, w, b, x, y): a linear softmax classifier of 8×8 images, whose input gradient is known."""
    w = rng.normal(size=(8 * 8 * 3, 10)).astype("float32") * 0.1
    b = rng.normal(size=10).astype("float32")
    x = rng.uniform(0.2, 0.8, (batch, 8, 8, 3)).astype("float32")
    return LinearSoftmax(w, b), w, b, x, rng.integers(0, 10, batch)


def test_fgsm_and_one_pgd_step_match_the_closed_form(rng):
    model, w, b, x, y = linear_problem(rng, 5)
    lam = np.zeros(5, "float32")
    eps = 8 / 255
    fgsm = build_attack("fgsm")
    np.testing.assert_allclose(fgsm(model, x, y, lam), x + eps * np.sign(analytic_gradient(w, b, x, y)), atol=1e-6)

    step = 2 / 255
    pgd = LinfPGD(epsilon=eps, steps=1, step_size=step, random_start=True)
    seeds = default_seeds(5, base=3)
    start = np.clip(x + eps * np.asarray(uniform_noise(seeds, x.shape)), 0, 1)  # the first random start
    expected = np.clip(start + step * np.sign(analytic_gradient(w, b, start, y)), x - eps, x + eps)
    np.testing.assert_allclose(pgd(model, x, y, lam, seeds=seeds), np.clip(expected, 0, 1), atol=1e-6)


def test_n_fgsm_starts_in_twice_the_ball_and_is_not_projected_onto_it(rng):
    model, w, b, x, y = linear_problem(rng, 6)
    eps, seeds = 8 / 255, default_seeds(6, base=5)
    start = np.clip(x + 2 * eps * np.asarray(uniform_noise(seeds, x.shape)), 0, 1)
    expected = np.clip(start + eps * np.sign(analytic_gradient(w, b, start, y)), 0, 1)
    x_adv = np.asarray(build_attack("n-fgsm")(model, x, y, np.ones(6, "float32"), seeds=seeds))
    np.testing.assert_allclose(x_adv, expected, atol=1e-6)
    assert np.abs(x_adv - x).max() > 2 * eps  # beyond the ε-ball: N-FGSM does not project


def test_attacks_are_deterministic_under_a_seed(oats_model, rng):
    x, y, lam = images(rng, 4), np.arange(4), np.full(4, 0.3, "float32")
    attack = build_attack("pgd7")
    a = attack(oats_model, x, y, lam, seeds=default_seeds(4, base=1))
    np.testing.assert_array_equal(a, attack(oats_model, x, y, lam, seeds=default_seeds(4, base=1)))
    assert not np.array_equal(a, attack(oats_model, x, y, lam, seeds=default_seeds(4, base=2)))


def test_mixed_lambda_batch_equals_attacking_each_group(oats_model, rng):
    x, y = images(rng, 8), np.arange(8)
    lam = np.array([0, 0.2, 0, 1, 0.4, 0, 0.1, 0.3], "float32")
    seeds = np.asarray(default_seeds(8))
    attack = build_attack("pgd7")
    mixed = np.asarray(attack(oats_model, x, y, lam, width=0.75, seeds=seeds))
    for group in (lam == 0, lam > 0):
        alone = np.asarray(attack(oats_model, x[group], y[group], lam[group], width=0.75, seeds=seeds[group]))
        assert np.mean(np.abs(mixed[group] - alone) > 1e-5) < 1e-3
    # λ matters inside the attack: attacking with all λ = 0 gives other points for the λ > 0 samples.
    clean_route = np.asarray(attack(oats_model, x, y, np.zeros(8, "float32"), width=0.75, seeds=seeds))
    assert np.mean(np.abs(clean_route[lam > 0] - mixed[lam > 0]) > 1e-5) > 0.1


def test_apgd_checkpoints_follow_the_paper():
    check, window = _apgd_checkpoints(100)
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 of 100 iterations (1-based counts).
    assert list(np.flatnonzero(check) + 1) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert window[21] == 22 and window[98] == 6


@pytest.mark.slow
def test_attack_strength_ordering_on_a_trained_model(trained_model, cifar10):
    x, y = cifar10["test"]
    # The model learned: its SA is about 0.31 (5,000 test images); on 1,000 images the standard error
    # is 0.015, so 0.25 is 4 standard errors below it (and 10 above chance, 0.1).
    assert accuracy(trained_model, x[:1000], y[:1000], np.zeros(1000, "float32")) > 0.25
    x, y = x[:128], y[:128]
    lam = np.zeros(len(y), "float32")
    eps = 2 / 255  # small enough that this standard-trained model keeps some robust accuracy
    sa = accuracy(trained_model, x, y, lam)
    ra = {name: accuracy(trained_model, build_attack(name, epsilon=eps)(trained_model, x, y, lam), y, lam)
          for name in ("fgsm", "pgd7", "pgd20", "apgd-ce")}
    assert 0.0 < ra["pgd20"] <= ra["pgd7"] <= ra["fgsm"] < sa
    assert ra["apgd-ce"] <= ra["pgd20"] + 0.02, ra


@pytest.mark.slow
def test_mirrored_strategy_gives_the_same_robust_accuracy(trained_model, cifar10, two_replicas):
    x, y = cifar10["test"]
    x, y = x[:64], y[:64]
    lam = np.zeros(len(y), "float32")
    seeds = np.asarray(default_seeds(len(y), base=5))
    attack = build_attack("pgd7", epsilon=2 / 255)

    def correct_on(model):
        def correct(images, labels, lams, sample_seeds):
            x_adv = attack(model, images, labels, lams, seeds=sample_seeds)
            logits = model({"image": x_adv, "lam": lams}, training=False)
            return tf.reduce_sum(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) == labels, tf.int32))

        return tf.function(correct)

    single = int(correct_on(trained_model)(x, y, lam, seeds))
    strategy = two_replicas
    with strategy.scope():  # the model's variables are mirrored onto both devices
        replicated = OATNetwork.from_config(trained_model.get_config())
    replicated.set_weights(trained_model.get_weights())
    dataset = tf.data.Dataset.from_tensor_slices((x, y, lam, seeds)).batch(32)
    total, correct = 0, correct_on(replicated)
    for batch in strategy.experimental_distribute_dataset(dataset):
        per_replica = strategy.run(correct, args=batch)
        total += int(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
    assert strategy.num_replicas_in_sync == 2
    assert total == single


@pytest.mark.parametrize("name", ["pgd0", "pgd7-xx", "cw", "apgd"])
def test_unknown_attack_names(name):
    with pytest.raises(ValueError, match="unknown attack"):
        build_attack(name)


def test_xla_compiled_attack_agrees_with_the_graph_one(oats_model, rng):
    x, y, lam = images(rng, 4), np.arange(4), np.array([0, 0.1, 0.4, 1], "float32")
    plain = np.asarray(build_attack("pgd7")(oats_model, x, y, lam, width=0.5))
    compiled = np.asarray(build_attack("pgd7", jit_compile=True)(oats_model, x, y, lam, width=0.5))
    # Same random start (drawn outside XLA); float differences may flip the sign of a few gradient entries.
    assert np.mean(np.abs(plain - compiled) > 1e-5) < 0.02
