"""Smaller forms of a trained network's λ path for export: the λ encoding folded into FiLM's
first layer (exact), or every norm's batch norm and FiLM replaced by one table over λ (with a
computed error bound)."""

import numpy as np

from oat_tf.layers.slimming import channels_at, width_index
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


def _mlp_output(film, code, width):
    """FiLM's MLP output [γ part | β part] at `width` in float64, (N, 2C_α), and its hidden pre-activations."""
    c = channels_at(width, film.channels)
    w = lambda variable: np.asarray(variable, np.float64)  # noqa: E731
    pre = code @ w(film.hidden_kernel)[:, : 2 * c] + w(film.hidden_bias)[: 2 * c]
    hidden = np.where(pre > 0, pre, film.negative_slope * pre)
    out = np.concatenate([hidden @ w(film.gamma_kernel)[: 2 * c, :c] + w(film.gamma_bias)[:c],
                          hidden @ w(film.beta_kernel)[: 2 * c, :c] + w(film.beta_bias)[:c]], 1)
    return out, pre


def _stored(film, output):
    """What a λ table stores for FiLM: the MLP's output, plus 1 for γ in the identity form, whose γ, β
    are then affine in it; the reference form's LeakyReLU is applied after the lookup."""
    return output + np.repeat([1.0, 0.0], output.shape[1] // 2) if film.form == "identity" else output


def _activated(film, stored):
    """γ, β from stored table values (`_stored`), as `FiLM.modulation` makes them."""
    return np.where(stored > 0, stored, film.negative_slope * stored) if film.form == "reference" else stored


def _crossings(points, values):
    """λ where a column of `values` (linear between consecutive `points`) crosses zero."""
    a, b = values[:-1], values[1:]
    rows, cols = np.nonzero(a * b < 0)
    return points[rows] + (points[rows + 1] - points[rows]) * a[rows, cols] / (a[rows, cols] - b[rows, cols])


def _table_error(film, width, encoding, knots, table):
    """Largest |Δγ|, |Δβ| over λ ∈ [0, 1] between `film` at `width` and `table` (its `_stored` values
    at `knots`) interpolated linearly. Both are piecewise linear, so the largest error is at a kink of
    either: the encoding's grid and the knots, each hidden unit's zero crossing between those, and
    (reference form, whose output passes a LeakyReLU) each output's zero crossing, exact or interpolated."""
    grid = np.array([0.0, 1.0]) if encoding.kind == "scalar" else np.asarray(encoding.grid, np.float64)

    def exact_and_interpolated(at):
        interpolated = np.stack([np.interp(at, knots, column) for column in table.T], 1)
        return _stored(film, _mlp_output(film, _code(encoding, at), width)[0]), interpolated

    breaks = np.unique(np.concatenate([grid, knots]))
    breaks = np.unique(np.concatenate([breaks, _crossings(breaks, _mlp_output(film, _code(encoding, breaks), width)[1])]))
    if film.form == "reference":
        breaks = np.unique(np.concatenate([breaks, *map(lambda v: _crossings(breaks, v), exact_and_interpolated(breaks))]))
    exact, interpolated = (_activated(film, v) for v in exact_and_interpolated(breaks))
    return float(np.abs(interpolated - exact).max())


def _knots(points, lam_grid):
    """`points` uniform λ in [0, 1] and the training grid's λ."""
    uniform = np.linspace(0.0, 1.0, int(points))
    return np.unique(np.concatenate([uniform, [g for g in lam_grid if np.abs(uniform - g).min() > 1e-6]]))


def _average_affine(model, norm, width):
    """The norm's whole inference affine at `width`, (γ·s)·z + (γ·t + β), averaged over λ = 0 and
    λ = 1: (scale, shift), float64 (C_α,) each. Channels whose averaged scale is below 1e-3 of the
    largest take 1/σ̄ of the moving statistics pooled over the routes, and no shift."""
    (clean_scale, clean_shift), (adversarial_scale, adversarial_shift) = _route_affines(norm, width)
    c = len(clean_scale)
    gamma, beta = np.ones((2, c)), np.zeros((2, c))
    if norm.modulation is not None:
        code = _code(model.encoding, np.array([0.0, 1.0]))
        values = _activated(norm.modulation, _stored(norm.modulation, _mlp_output(norm.modulation, code, width)[0]))
        gamma, beta = values[:, :c], values[:, c:]
    scale = (gamma[0] * clean_scale + gamma[1] * adversarial_scale) / 2
    shift = (gamma[0] * clean_shift + beta[0] + gamma[1] * adversarial_shift + beta[1]) / 2
    params = norm.norm.params[width_index(norm.norm.widths, width)]
    means, variances = (np.stack([np.asarray(route[k], np.float64)[:c] for route in params]) for k in (2, 3))
    small = np.abs(scale) < 1e-3 * np.abs(scale).max()
    scale = np.where(small, 1.0 / np.sqrt(variances.mean(0) + means.var(0) + norm.norm.epsilon), scale)
    return scale, np.where(small, 0.0, shift)


def _norm_fold(model, norm, width):
    """Per-channel (c, d), float64 (C,) each, to fold into the convolution before `norm`: the norm's
    average affine at `width` (`_average_affine`) on that width's channels, so that c·z + d is
    normalized per channel there, as a plain network's convolution output with its batch norm folded
    in, and the full width's on the channels beyond (they only keep the function exact)."""
    scale, shift = _average_affine(model, norm, max(model.widths))
    narrow_scale, narrow_shift = _average_affine(model, norm, width)
    scale[: len(narrow_scale)], shift[: len(narrow_shift)] = narrow_scale, narrow_shift
    return scale, shift


def _route_affines(norm, width, fold=None):
    """The batch norm's folded (scale, shift) for the clean and the adversarial route, float64 (C_α,) each;
    with a `fold` (c, d) from `_norm_fold`, those of the folded input c·z + d instead."""
    affines = []
    for adversarial in (False, True):
        flags = np.array([adversarial]) if norm.dual else None
        scale, shift = (np.asarray(a, np.float64)[0] for a in norm.norm.inference_affine(flags, width))
        if fold is not None:
            c, d = (v[: len(scale)] for v in fold)
            scale, shift = scale / c, shift - scale * d / c
        affines.append((scale, shift))
    return affines


TABLE_POINT_CHOICES = (11, 21, 26, 41, 51, 61, 81, 101)  # λ steps 0.1 … 0.01


def tabulate_network(model, points=101, tolerance=None, fold_width=None):
    """The export form of `model` (`OATNetwork` with `norm_table_knots`) and what each width's table is.

    Every norm at inference is a per-sample affine x·(γs) + (γt + β): its batch norm's folded
    (s, t) for the sample's route (λ = 0 clean, λ > 0 adversarial; with `blend` routing the
    interpolation (1 − λ)·clean + λ·adversarial) and FiLM's γ(λ), β(λ). With a
    piecewise-linear λ code and LeakyReLU, FiLM's MLP output is piecewise linear in λ with kinks where
    a hidden unit crosses zero. The returned network stores, per width, that output for every norm at
    knots in [0, 1] (uniform, plus the training grid's λ) in one table, interpolates it linearly and
    applies the form's activation (`film_table`), and the routes' (s, t) in another (`route_table`).
    It is exact at the knots and off by at most the returned `max_abs_error` in γ, β between them,
    computed in float64 at every kink (`_table_error`). Every convolution that a norm follows holds
    that norm's average affine at `fold_width` (default: the full width) as a per-channel scale and
    bias (`_norm_fold`), and the route table what remains, so the float function is unchanged at
    every width while each convolution's output at `fold_width` is normalized per channel, as a plain
    network's with its batch norm folded in: an int8 file of that width quantizes it per tensor,
    which would otherwise give channels of small spread coarse steps
    (`results/bench/int8_fold_per_width_plan.md`).

    `points` uniform knots at every width, or, with a `tolerance`, per width the fewest of
    `TABLE_POINT_CHOICES` up to `points` whose error is within it (else `points`). Returns
    (network, {"points": [per width], "max_abs_error": [per width]}).
    """
    if not model.film:
        raise ValueError("a network without FiLM has no λ path worth a table.")
    if model.norm_table_knots is not None:
        raise ValueError("this network is tabulated already.")
    if model.encoding_kind not in PIECEWISE_LINEAR_ENCODINGS:
        raise ValueError(f"the {model.encoding_kind!r} λ encoding is not piecewise linear in λ; cannot tabulate it.")
    if int(points) < 2:
        raise ValueError(f"a λ table needs at least 2 points, got {points}.")
    fold_width = max(model.widths) if fold_width is None else model.widths[width_index(model.widths, fold_width)]
    norms = model.conditional_norms()
    films = [norm.modulation for norm in norms if norm.modulation is not None]
    candidates = [p for p in TABLE_POINT_CHOICES if p < points] + [int(points)] if tolerance is not None else [points]

    def error(knots, width):
        code = _code(model.encoding, knots)
        return max(_table_error(f, width, model.encoding, knots, _stored(f, _mlp_output(f, code, width)[0]))
                   for f in films)

    chosen, errors = [], []
    for width in model.widths:
        for count in candidates:
            knots = _knots(count, model.lam_grid)
            worst = error(knots, width)
            if tolerance is None or worst <= tolerance:
                break
        chosen.append(knots)
        errors.append(worst)
    tabulated = OATNetwork.from_config(dict(model.get_config(), norm_table_knots=[k.tolist() for k in chosen]))
    targets = {v.path: v for v in tabulated.weights}
    for variable in model.weights:
        if variable.path in targets:  # convolutions and the classifier
            targets[variable.path].assign(variable)
    folds = {}
    for (conv, norm), (target, _) in zip(model.normalized_convolutions(), tabulated.normalized_convolutions()):
        c, d = folds[id(norm)] = _norm_fold(model, norm, fold_width)
        target.kernel.assign((np.asarray(conv.kernel, np.float64) * c).astype(np.float32))
        target.bias.assign(d.astype(np.float32))
    for i, (width, knots) in enumerate(zip(model.widths, chosen)):
        code = _code(model.encoding, knots)
        gammas, betas, routes = [], [], []
        for norm in norms:
            c = channels_at(width, norm.channels)
            if norm.modulation is None:  # γ = 1, β = 0 in either form
                gamma, beta = np.ones((len(knots), c)), np.zeros((len(knots), c))
            else:
                values = _stored(norm.modulation, _mlp_output(norm.modulation, code, width)[0])
                gamma, beta = values[:, :c], values[:, c:]
            gammas.append(gamma)
            betas.append(beta)
            routes.append(_route_affines(norm, width, folds.get(id(norm))))
        film = np.concatenate(gammas + betas, 1)
        clean, adversarial = (np.concatenate([r[k][0] for r in routes] + [r[k][1] for r in routes]) for k in (0, 1))
        # Route table rows at λ = 0 and 1: `switch` takes BN_a for every λ > 0, `blend` interpolates.
        route_rows = np.stack([clean if model.norm_routing == "blend" else adversarial, adversarial])
        for table, rows, zero_row in ((tabulated.film_table, film, film[0]), (tabulated.route_table, route_rows, clean)):
            table.tables[i].assign(rows.astype(np.float32))
            table.zero_rows[i].assign(zero_row.astype(np.float32))
    return tabulated, dict(points=[len(k) for k in chosen], max_abs_error=errors)


def store_tables_int8(tabulated):
    """`tabulated` with both λ tables stored as int8 codes with a float scale and offset per column
    (`LambdaTable(storage="int8")`), and the largest change this makes to an entry of each: the
    FiLM table's is the same bound for γ, β (interpolation and the form's LeakyReLU do not enlarge
    it); the route table's two values per column become the two end codes, exact up to rounding."""
    if tabulated.film_table is None:
        raise ValueError("only a tabulated network (see tabulate_network) has λ tables to store in int8.")
    stored = OATNetwork.from_config(dict(tabulated.get_config(), table_storage="int8"))
    tables = {v.path for layer in (tabulated.film_table, tabulated.route_table) for v in layer.tables}
    targets = {v.path: v for v in stored.weights}
    for variable in tabulated.weights:
        if variable.path not in tables:
            targets[variable.path].assign(variable)
    errors = {}
    for source, target in ((tabulated.film_table, stored.film_table), (tabulated.route_table, stored.route_table)):
        errors[source.name] = 0.0
        for i, table in enumerate(source.tables):
            values = np.asarray(table, np.float64)
            low, high = values.min(0), values.max(0)
            scale = np.where(high > low, (high - low) / 255.0, 1.0).astype(np.float32)
            # A constant column (every route-table column under switch routing) is code 0 at its value, exactly.
            offset = np.where(high > low, low + 128.0 * scale, low).astype(np.float32)
            codes = np.clip(np.round((values - offset) / scale), -128, 127)
            target.tables[i].assign(codes.astype(np.int8))
            target.column_scales[i].assign(scale)
            target.column_offsets[i].assign(offset)
            errors[source.name] = max(errors[source.name], float(np.abs(codes * scale + offset - values).max()))
    return stored, errors


FILM_TABLE_POINTS = 101  # λ step 0.01: every point of S1 on the grid
FILM_TABLE_TOLERANCE = 1e-3  # largest |Δγ|, |Δβ| a table may have against the MLP


def lambda_path_weight_count(model, width=1.0):
    """Numbers a file at `width` stores for the norms' λ-dependent affines: the table's entries, or
    FiLM's weights plus the folded batch norms' scale and shift per route."""
    i = width_index(model.widths, width)
    if model.film_table is not None:
        return sum((len(t.knots[i]) + 1) * t.dims[i] for t in (model.film_table, model.route_table))
    total = 0
    for norm in model.conditional_norms():
        c = channels_at(width, norm.channels)
        total += (4 if norm.dual else 2) * c
        if norm.modulation is not None:
            code_dim = norm.modulation.hidden_kernel.shape[0]
            total += code_dim * 2 * c + 2 * c + 2 * c * 2 * c + 2 * c  # hidden layer, then the γ and β layers
    return total


def compact_network(model, table_points=FILM_TABLE_POINTS, tolerance=FILM_TABLE_TOLERANCE, width=None):
    """The network to export and how its λ path is represented (a dict for the manifest).

    The encoding folded into FiLM's first layer (exact), or, when `table_points` > 0, the norms as
    one λ table (`tabulate_network`, per width the fewest points up to `table_points` within
    `tolerance`) if that holds fewer numbers at full width and is within `tolerance` at every width.
    Tables pay off for wide layers: at C channels a norm's table costs about points × 2C numbers
    against the MLP's (2C)², so ResNet-34's λ path shrinks while a small ResNet's may grow.
    `width`: the width the file will hold, whose batch norms a λ-table network folds into its
    convolutions (`tabulate_network`'s `fold_width`; default the full width).
    """
    folded = fold_lambda_encoding(model)
    if not model.film:
        return folded, None
    mlp = dict(representation=f"FiLM MLP, {model.encoding_kind} λ encoding folded into its first layer (exact)",
               weights_at_full_width=lambda_path_weight_count(folded))
    tabulable = model.encoding_kind in PIECEWISE_LINEAR_ENCODINGS and not model.private_share and not model.adapter_share
    if table_points <= 0 or not tabulable:
        return folded, mlp
    tabulated, facts = tabulate_network(model, table_points, tolerance, fold_width=width)
    table = dict(representation="λ tables per width: every FiLM MLP's output at uniform λ in [0, 1] and the "
                                "training grid, linear in between, and every batch norm's affine per route",
                 widths=list(model.widths), **facts, weights_at_full_width=lambda_path_weight_count(tabulated))
    if table["weights_at_full_width"] < mlp["weights_at_full_width"] and max(facts["max_abs_error"]) <= tolerance:
        return tabulated, dict(table, tolerance=tolerance, instead_of=mlp)
    return folded, dict(mlp, table_not_used=dict(table, tolerance=tolerance))
