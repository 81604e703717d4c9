"""Folding the λ encoding into FiLM's first layer: the same function with fewer weights."""

import numpy as np

from oat_tf.models.network import OATNetwork


def fold_lambda_encoding(model):
    """`model` with its orthogonal λ encoding folded into every FiLM's first layer.

    The orthogonal code of λ is hat(λ) @ codes, with hat(λ) the K grid points' piecewise-linear
    weights (they sum to 1) and codes the K × D grid rows. FiLM's first layer computes
    code @ W + b = hat(λ) @ (codes @ W + b), so the same network with the `onehot` encoding
    (code = hat(λ)) and first-layer kernel codes @ W + b, bias 0, computes the same function up
    to float rounding, with K × 2C first-layer weights per FiLM instead of (D + 1) × 2C (K = 6
    for S1 against D = 128). Models without FiLM or with another encoding are returned as they are.
    """
    if not model.film or model.encoding_kind != "orthogonal":
        return model
    folded = OATNetwork.from_config(dict(model.get_config(), encoding="onehot"))
    codes = np.asarray(model.encoding.codes, np.float64)
    source = {v.path: np.asarray(v) for v in model.weights}
    for variable in folded.weights:
        path = variable.path
        if path.endswith("hidden_kernel"):
            bias = source[path.removesuffix("kernel") + "bias"]
            variable.assign((codes @ source[path] + bias).astype(variable.dtype))
        elif path.endswith("hidden_bias"):
            variable.assign(np.zeros(variable.shape, variable.dtype))
        elif not path.endswith("lam_encoding/codes"):  # onehot's codes stay the identity
            variable.assign(source[path])
    return folded
