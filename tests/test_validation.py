import numpy as np
import pytest

from oat_tf import build_model
from tests.conftest import images


@pytest.fixture(scope="module")
def model():
    return build_model("resnet20", "oats", width_multiplier=0.25)


def call(model, image, lam, **kwargs):
    return model({"image": image, "lam": lam}, **kwargs)


@pytest.mark.parametrize(
    "lam,match",
    [
        ([0.1, 1.5], r"\[0, 1\]"),
        ([-0.1, 0.5], r"\[0, 1\]"),
        ([np.nan, 0.5], "NaN"),
        ([0.1, 0.2, 0.3], "batch size"),
        ([[0.1, 0.2]], "shape"),
    ],
)
def test_bad_lambda(model, rng, lam, match):
    with pytest.raises(ValueError, match=match):
        call(model, images(rng, 2), np.asarray(lam, "float32"))


def test_width_not_in_model_lists_valid_widths(model, rng):
    with pytest.raises(ValueError, match=r"0.6.*\[0.5, 0.75, 1.0\]"):
        call(model, images(rng, 2), np.zeros(2, "float32"), width=0.6)


@pytest.mark.parametrize("shape", [(2, 32, 32), (2, 28, 28, 3), (2, 32, 32, 1), (32, 32, 3)])
def test_bad_image_shape(model, shape):
    with pytest.raises(ValueError, match="image must have shape"):
        call(model, np.zeros(shape, "float32"), np.zeros(shape[0], "float32"))


def test_missing_lambda_and_unknown_keys(model, rng):
    with pytest.raises(ValueError, match="conditioned on λ"):
        model(images(rng, 2))
    with pytest.raises(ValueError, match="keys"):
        model({"image": images(rng, 2), "lambda": np.zeros(2, "float32")})


def test_plain_model_accepts_a_bare_image(rng):
    plain = build_model("resnet20", "plain", width_multiplier=0.25)
    assert plain(images(rng, 2)).shape == (2, 10)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="resnet99"), "unknown model"),
        (dict(variant="oatz"), "unknown variant"),
        (dict(widths=(0.5, 0.75)), "largest width"),
        (dict(widths=(0.0, 1.0)), r"\(0, 1\]"),
        (dict(lam_grid=(0.0, 2.0)), r"\[0, 1\]"),
        (dict(width_multiplier=0.0), "positive"),
    ],
)
def test_bad_configuration(kwargs, match):
    args = dict(name="resnet20", variant="oats") | kwargs
    with pytest.raises(ValueError, match=match):
        build_model(args.pop("name"), args.pop("variant"), **args)
