"""Smaller forms of a trained network's λ path for export: the λ encoding folded into FiLM's
first layer (exact), or FiLM's MLP replaced by a table over λ (with a computed error bound)."""

import numpy as np

from oat_tf.layers.film import FiLM
from oat_tf.layers.slimming import channels_at
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


PIECEWISE_LINEAR_ENCODINGS = ("orthogonal", "onehot", "scalar")


def _code(encoding, lam):
    """The λ code in float64, (N, D) for λ of shape (N,): a piecewise-linear function of λ."""
    if encoding.kind == "scalar":
        return lam[:, None]
    grid = np.asarray(encoding.grid, np.float64)
    codes = np.asarray(encoding.codes, np.float64)
    hats = np.stack([np.interp(lam, grid, row) for row in np.eye(len(grid))], -1)
    return hats @ codes


def _film_layers(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, FiLM)]


def _mlp_output(film, code, width):
    """FiLM's MLP output [γ part | β part] at `width` in float64, (N, 2C_α), and its hidden pre-activations."""
    c = channels_at(width, film.channels)
    w = lambda variable: np.asarray(variable, np.float64)  # noqa: E731
    pre = code @ w(film.hidden_kernel)[:, : 2 * c] + w(film.hidden_bias)[: 2 * c]
    hidden = np.where(pre > 0, pre, film.negative_slope * pre)
    out = np.concatenate([hidden @ w(film.gamma_kernel)[: 2 * c, :c] + w(film.gamma_bias)[:c],
                          hidden @ w(film.beta_kernel)[: 2 * c, :c] + w(film.beta_bias)[:c]], 1)
    return out, pre


def _crossings(points, values):
    """λ where a column of `values` (linear between consecutive `points`) crosses zero."""
    a, b = values[:-1], values[1:]
    rows, cols = np.nonzero(a * b < 0)
    return points[rows] + (points[rows + 1] - points[rows]) * a[rows, cols] / (a[rows, cols] - b[rows, cols])


def _table_error(film, width, encoding, knots, table):
    """Largest |Δγ|, |Δβ| over λ ∈ [0, 1] between `film` at `width` and `table` (its MLP output at
    `knots`) interpolated linearly. Both are piecewise linear, so the largest error is at a kink of
    either: the encoding's grid and the knots, each hidden unit's zero crossing between those, and
    (reference form, whose output passes a LeakyReLU) each output's zero crossing."""
    grid = np.array([0.0, 1.0]) if encoding.kind == "scalar" else np.asarray(encoding.grid, np.float64)

    def exact_and_interpolated(at):
        interpolated = np.stack([np.interp(at, knots, column) for column in table.T], 1)
        return _mlp_output(film, _code(encoding, at), width)[0], interpolated

    breaks = np.unique(np.concatenate([grid, knots]))
    breaks = np.unique(np.concatenate([breaks, _crossings(breaks, _mlp_output(film, _code(encoding, breaks), width)[1])]))
    exact, interpolated = exact_and_interpolated(breaks)
    if film.form == "reference":
        breaks = np.unique(np.concatenate([breaks, _crossings(breaks, exact), _crossings(breaks, interpolated)]))
        exact, interpolated = (np.where(v > 0, v, film.negative_slope * v) for v in exact_and_interpolated(breaks))
    return float(np.abs(interpolated - exact).max())


def tabulate_film(model, points=101):
    """`model` with every FiLM's MLP replaced by a table of its output at λ on a grid, and the error.

    The λ code is piecewise linear in λ and the MLP's activation is LeakyReLU, so γ(λ) and β(λ) are
    piecewise linear with kinks where a hidden unit crosses zero. The returned network evaluates them
    at the `points` uniform λ in [0, 1] (and the training grid's points) and interpolates linearly
    between them: a onehot code over that grid and FiLM without hidden layer, one (grid × 2C_α)
    table per width. It is exact at the table's λ; the returned error, the largest |Δγ|, |Δβ| over
    every FiLM, width and λ ∈ [0, 1], is computed at every kink in float64 (`_table_error`). Only the orthogonal, onehot and scalar encodings are
    piecewise linear; a model without FiLM is returned as it is with error 0.
    """
    if not model.film:
        return model, 0.0
    if not model.film_hidden:
        raise ValueError("this model's FiLM has no hidden layer already; nothing to tabulate.")
    if model.encoding_kind not in PIECEWISE_LINEAR_ENCODINGS:
        raise ValueError(f"the {model.encoding_kind!r} λ encoding is not piecewise linear in λ; cannot tabulate it.")
    if int(points) < 2:
        raise ValueError(f"a FiLM table needs at least 2 points, got {points}.")
    uniform = np.linspace(0.0, 1.0, int(points))
    extra = [g for g in model.lam_grid if np.abs(uniform - g).min() > 1e-6]
    knots = np.unique(np.concatenate([uniform, extra]))
    tabulated = OATNetwork.from_config(dict(model.get_config(), encoding="onehot", lam_grid=knots.tolist(),
                                            film_hidden=False))
    source = {v.path: np.asarray(v) for v in model.weights}
    targets = {v.path: v for v in tabulated.weights}
    for path, variable in targets.items():
        if path in source and not path.endswith("lam_encoding/codes"):
            variable.assign(source[path])
    error = 0.0
    for film in _film_layers(model):
        prefix = film.hidden_kernel.path.rsplit("/", 1)[0]
        kernel = np.zeros(targets[f"{prefix}/linear_kernel"].shape, np.float32)
        for i, width in enumerate(model.widths):
            c = channels_at(width, film.channels)
            table = _mlp_output(film, _code(model.encoding, knots), width)[0].astype(np.float32)
            kernel[i, :, :c], kernel[i, :, film.channels : film.channels + c] = table[:, :c], table[:, c:]
            error = max(error, _table_error(film, width, model.encoding, knots, table))
        targets[f"{prefix}/linear_kernel"].assign(kernel)
    return tabulated, error


FILM_TABLE_POINTS = 101  # λ step 0.01: every point of S1 on the grid
FILM_TABLE_TOLERANCE = 1e-3  # largest |Δγ|, |Δβ| a table may have against the MLP


def film_weight_count(model, width=1.0):
    """Weights FiLM uses at `width`, summed over the network (what a per-width file stores)."""
    total = 0
    for film in _film_layers(model):
        c = channels_at(width, film.channels)
        code_dim = film.hidden_kernel.shape[0] if film.hidden else film.linear_kernel.shape[1]
        total += code_dim * 2 * c + 2 * c + (2 * c * 2 * c + 2 * c if film.hidden else 0)  # + γ, β layers
    return total


def compact_network(model, table_points=FILM_TABLE_POINTS, tolerance=FILM_TABLE_TOLERANCE):
    """The network to export and how its FiLM is represented (a dict for the manifest).

    The encoding folded into FiLM's first layer (exact), or, when `table_points` > 0, FiLM as a
    table over λ (`tabulate_film`) if that holds fewer weights at full width and its error is at
    most `tolerance`. Tables pay off for wide layers: at C channels a table costs points × 2C
    weights against the MLP's (2C)², so ResNet-34's FiLM shrinks and a half-width ResNet-20's would
    grow (the folded MLP is kept there).
    """
    folded = fold_lambda_encoding(model)
    if not model.film:
        return folded, None
    mlp = dict(representation=f"MLP, {model.encoding_kind} λ encoding folded into its first layer (exact)",
               weights_at_full_width=film_weight_count(folded))
    if table_points <= 0 or model.encoding_kind not in PIECEWISE_LINEAR_ENCODINGS:
        return folded, mlp
    tabulated, error = tabulate_film(model, table_points)
    table = dict(representation=f"table of γ, β at {table_points} uniform λ in [0, 1], linear in between",
                 max_abs_error=error, weights_at_full_width=film_weight_count(tabulated))
    if table["weights_at_full_width"] < mlp["weights_at_full_width"] and error <= tolerance:
        return tabulated, dict(table, instead_of=mlp)
    return folded, dict(mlp, table_not_used=dict(table, tolerance=tolerance))
