import keras
import numpy as np
import pytest

from oat_tf.lambdas import S1
from oat_tf.layers import LambdaEncoding
from oat_tf.layers.lambda_encoding import orthogonal_rows


def encode(layer, lam):
    return np.asarray(layer(np.asarray(lam, "float32")))


def test_orthogonal_rows_are_orthonormal_and_seeded():
    rows = orthogonal_rows(6, 128, seed=3)
    np.testing.assert_allclose(rows @ rows.T, np.eye(6), atol=1e-5)
    np.testing.assert_array_equal(rows, orthogonal_rows(6, 128, seed=3))
    assert not np.allclose(rows, orthogonal_rows(6, 128, seed=4))


@pytest.mark.parametrize("kind", ["orthogonal", "onehot"])
def test_grid_values_give_exact_rows(kind):
    layer = LambdaEncoding(kind, dim=16, grid=S1)
    codes = encode(layer, S1)
    np.testing.assert_allclose(codes, np.asarray(layer.codes), atol=1e-6)


@pytest.mark.parametrize("kind", ["orthogonal", "onehot"])
def test_linear_between_grid_points(kind):
    layer = LambdaEncoding(kind, dim=16, grid=S1)
    layer.build()
    rows = np.asarray(layer.codes)
    for t in (0.25, 0.5, 0.9):
        np.testing.assert_allclose(encode(layer, [0.4 + t * 0.6])[0], (1 - t) * rows[4] + t * rows[5], atol=1e-5)
        np.testing.assert_allclose(encode(layer, [0.1 * t])[0], (1 - t) * rows[0] + t * rows[1], atol=1e-5)


@pytest.mark.parametrize("kind", ["orthogonal", "onehot", "dct", "scalar"])
def test_continuous_and_shaped(kind):
    layer = LambdaEncoding(kind, dim=16, grid=S1)
    lam = np.linspace(0.0, 1.0, 2001)
    codes = encode(layer, lam)
    assert codes.shape == (lam.size, layer.output_dim)
    assert np.isfinite(codes).all()
    # Largest jump between neighbours 5e-4 apart is bounded by the steepest slope (no discontinuity).
    steps = np.abs(np.diff(codes, axis=0)).max()
    assert steps < 0.05, steps


def test_outside_grid_range_clamps_to_end_points():
    layer = LambdaEncoding("orthogonal", dim=16, grid=(0.2, 0.5))
    np.testing.assert_allclose(encode(layer, [0.0, 1.0]), encode(layer, [0.2, 0.5]), atol=1e-6)


def test_bad_configuration():
    with pytest.raises(ValueError, match="unknown λ encoding"):
        LambdaEncoding("sine")
    with pytest.raises(ValueError, match="dim"):
        LambdaEncoding("orthogonal", dim=4, grid=S1)
    with pytest.raises(ValueError, match="increasing"):
        LambdaEncoding("orthogonal", grid=(0.0, 0.3, 0.2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LambdaEncoding("orthogonal", grid=(0.0, 1.5))


def test_codes_are_a_non_trainable_weight_restored_from_the_file(tmp_path):
    inputs = keras.Input((1,))
    layer = LambdaEncoding("orthogonal", dim=16, grid=S1, seed=1)
    model = keras.Model(inputs, layer(keras.ops.reshape(inputs, (-1,))))
    assert layer.codes in layer.non_trainable_weights and not layer.trainable_weights
    # A matrix the seed cannot produce: the loaded model must use the saved values, not regenerate them.
    marked = np.asarray(layer.codes) * 2.0 + 0.5
    layer.codes.assign(marked)
    path = tmp_path / "encoding.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    lam = np.asarray([[0.0], [0.15], [1.0]], "float32")
    np.testing.assert_allclose(loaded(lam), model(lam), atol=1e-6)
    np.testing.assert_allclose(loaded.layers[-1].codes, marked)
