import numpy as np
import pytest

from oat_tf import build_model
from oat_tf.layers import DualBatchNorm, FiLM, LambdaEncoding, SlimmableConv2D, SlimmableDense, channels_at
from tests.conftest import images


def layers_by_path(model):
    return {layer.path.split("/", 1)[1]: layer for layer in model._flatten_layers(include_self=False, recursive=True)}


def copy_sub_network(wide, narrow, width):
    """Copies the weights that width `width` of `wide` uses into the full-width `narrow` network."""
    wide_layers, narrow_layers = layers_by_path(wide), layers_by_path(narrow)
    assert wide_layers.keys() == narrow_layers.keys()
    copied = 0
    for path, n in narrow_layers.items():
        w = wide_layers[path]
        if isinstance(n, (SlimmableConv2D, SlimmableDense)):
            kernel = np.asarray(w.kernel)
            index = tuple(slice(0, d) for d in n.kernel.shape)
            n.kernel.assign(kernel[index])
            if n.bias is not None:
                n.bias.assign(np.asarray(w.bias)[: n.bias.shape[0]])
            copied += 1
        elif isinstance(n, DualBatchNorm):
            source = w.params[w.widths.index(width)]
            for n_vars, w_vars in zip(n.params[0], source):
                for a, b in zip(n_vars, w_vars):
                    a.assign(b)
            copied += 1
        elif isinstance(n, FiLM):
            c2 = 2 * n.channels
            n.hidden_kernel.assign(np.asarray(w.hidden_kernel)[:, :c2])
            n.hidden_bias.assign(np.asarray(w.hidden_bias)[:c2])
            for name in ("gamma", "beta"):
                getattr(n, f"{name}_kernel").assign(np.asarray(getattr(w, f"{name}_kernel"))[:c2, : n.channels])
                getattr(n, f"{name}_bias").assign(np.asarray(getattr(w, f"{name}_bias"))[: n.channels])
            copied += 1
        elif isinstance(n, LambdaEncoding):
            n.codes.assign(w.codes)
    return copied


@pytest.mark.parametrize(
    "name,variant,narrow_variant",
    [("resnet20", "oats", "oat"), ("preact_resnet18", "oats", "oat"), ("resnet20", "slimmable", "plain")],
)
@pytest.mark.parametrize("width", [0.5, 0.75])
def test_sub_network_equals_narrow_network_with_copied_weights(rng, name, variant, narrow_variant, width):
    multiplier = 0.25 if name == "preact_resnet18" else 1.0  # keeps the 512-channel model quick
    wide = build_model(name, variant, width_multiplier=multiplier)
    narrow = build_model(name, narrow_variant, width_multiplier=multiplier * width)
    assert narrow.stem.filters == channels_at(width, wide.stem.filters)
    # Perturb BN statistics and affine parameters so that every width's set differs.
    for var in wide.weights:
        if "gamma" in var.path or "beta" in var.path or "moving" in var.path:
            var.assign(np.abs(rng.normal(1.0, 0.3, var.shape)).astype("float32"))
    assert copy_sub_network(wide, narrow, width) > 10
    inputs = {"image": images(rng, 6), "lam": np.array([0, 0.1, 0.25, 0.4, 1, 0], "float32")}
    for training in (False, True):
        np.testing.assert_allclose(
            wide(inputs, width=width, training=training), narrow(inputs, training=training), atol=2e-4, rtol=1e-4
        )
    # The narrow model is a different function from the full width, so equality above is not trivial.
    assert not np.allclose(wide(inputs, width=1.0), narrow(inputs), atol=1e-3)
