"""Conditioning options (FiLM form, FiLM after shortcut norms, clean share): exactness, files, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from oat_tf import build_model
from oat_tf.config import TrainConfig
from oat_tf.export import TFLiteModel, convert, export_bundle, representative_dataset, write_saved_model
from oat_tf.folding import (TABLE_POINT_CHOICES, compact_network, fold_lambda_encoding, lambda_path_weight_count,
                            store_tables_int8, tabulate_network)
from oat_tf.lambda_sampling import LambdaSampler, clean_count
from oat_tf.layers import FiLM, LambdaAdapter, LambdaChannelGate, LambdaTable
from oat_tf.layers.channel_gate import private_masks
from oat_tf.layers.slimming import channels_at
from oat_tf.models import OATNetwork
from oat_tf.lambdas import S1
from tests.conftest import images

OPTIONS = [dict(film_form="identity"), dict(shortcut_film=False), dict(private_share=0.25), dict(adapter_share=0.25),
           dict(norm_routing="blend"),
           dict(film_form="identity", shortcut_film=False, private_share=0.25, adapter_share=0.25)]


def _path(variable):
    return variable.path.split("/", 1)[1]  # without the model's name


def _copy_shared_weights(source, target):
    """Copies every weight of `source` into the weight of `target` at the same path (convs, classifier)."""
    by_path = {_path(v): v for v in target.weights}
    copied = 0
    for v in source.weights:
        if _path(v) in by_path:
            by_path[_path(v)].assign(v)
            copied += 1
    return copied


def test_film_forms_at_initialization(rng):
    h = rng.standard_normal((3, 4, 4, 8)).astype("float32")
    code = rng.standard_normal((3, 16)).astype("float32")
    identity, reference = FiLM(8, form="identity"), FiLM(8, form="reference")
    np.testing.assert_array_equal(identity(h, code), h)
    assert np.abs(np.asarray(reference(h, code)) - h).max() > 0.1
    assert identity.get_config()["form"] == "identity"
    with pytest.raises(ValueError, match="unknown FiLM form"):
        FiLM(8, form="centred")


@pytest.mark.parametrize("variant", ["oat", "oats"])
def test_identity_film_network_is_the_unconditioned_network_at_initialization(rng, variant):
    plain = build_model("resnet20", "plain" if variant == "oat" else "slimmable", width_multiplier=0.25)
    oat = build_model("resnet20", variant, width_multiplier=0.25, film_form="identity")
    assert _copy_shared_weights(plain, oat) == sum("kernel" in _path(v) or "bias" in _path(v) for v in plain.weights)
    x = images(rng, 6)
    for width in oat.widths:
        expected = np.asarray(plain(x, width=width, training=False))
        mixed = np.array([0.0, 0.1, 0.0, 0.35, 1.0, 0.2], "float32")
        np.testing.assert_allclose(oat({"image": x, "lam": mixed}, width=width), expected, atol=1e-5)
        # In training mode each route normalizes with its own batch statistics: one route at a time.
        expected = np.asarray(plain(x, width=width, training=True))
        for lam in (0.0, 0.3, 1.0):
            got = oat({"image": x, "lam": np.full(6, lam, "float32")}, width=width, training=True)
            np.testing.assert_allclose(got, expected, atol=1e-4)


def test_shortcut_film_option_removes_only_the_shortcut_modulation():
    with_film, without = (build_model("resnet20", "oat", width_multiplier=0.25, shortcut_film=s) for s in (True, False))
    film_paths = lambda m: {_path(v) for v in m.weights if "/film/" in v.path}  # noqa: E731
    removed = film_paths(with_film) - film_paths(without)
    assert removed and all("shortcut_norm" in p for p in removed)
    assert not film_paths(without) - film_paths(with_film)
    assert any("shortcut_norm/bn" in _path(v) for v in without.weights)  # the norm itself stays
    with pytest.raises(ValueError, match="unknown FiLM form"):
        build_model("resnet20", "oat", film_form="centred")


def test_blended_norm_routing_interpolates_the_two_norms_between_the_ends(rng):
    """`blend` equals `switch` at λ = 0 and λ = 1 (the same weights), and between them each norm is the
    interpolation (1 − λ)·BN_c + λ·BN_a, so λ = 0.3 gives 0.7·(the λ = 0 route) + 0.3·(the λ = 1 route)
    in the first norm's output."""
    switch, blend = (build_model("resnet20", "oat", width_multiplier=0.25, film_form="identity", norm_routing=r)
                     for r in ("switch", "blend"))
    _perturbed(switch, seed=3)
    assert _copy_shared_weights(switch, blend) == len(blend.weights)
    x = images(rng, 4)
    for lam in (0.0, 1.0):
        inputs = {"image": x, "lam": np.full(4, lam, "float32")}
        np.testing.assert_allclose(blend(inputs), switch(inputs), atol=1e-5)
    inputs = {"image": x, "lam": np.full(4, 0.3, "float32")}
    assert np.abs(np.asarray(blend(inputs)) - np.asarray(switch(inputs))).max() > 1e-3
    norm = blend.stem_norm.norm
    adversarial = np.array([0.0, 0.3, 1.0], "float32")
    scale, shift = (np.asarray(t) for t in norm.inference_affine(adversarial))
    np.testing.assert_allclose(scale[1], 0.7 * scale[0] + 0.3 * scale[2], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(shift[1], 0.7 * shift[0] + 0.3 * shift[2], rtol=1e-6, atol=1e-7)
    assert np.abs(shift[0] - shift[2]).max() > 1e-3  # the routes differ (perturbed BN_a means)
    with pytest.raises(ValueError, match="unknown norm routing"):
        build_model("resnet20", "oat", norm_routing="soft")


def _perturbed(model, seed=0):
    """The model with random FiLM outputs and distinct BN_c / BN_a statistics, so λ and its route matter."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if any(name in v.path for name in ("gamma_kernel", "beta_kernel")):
            v.assign(rng.normal(0, 0.05, v.shape).astype("float32"))
        if "adapter" in v.path and "up/kernel" in v.path:
            v.assign(rng.normal(0, 0.1, v.shape).astype("float32"))
        if "adversarial" in v.path and "moving_mean" in v.path:
            v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    return model


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_options_round_trip_through_keras_files(tmp_path, rng, options):
    model = _perturbed(build_model("resnet8", "oats", width_multiplier=0.25, **options))
    inputs = {"image": images(rng, 4), "lam": np.array([0.0, 0.15, 0.4, 1.0], "float32")}
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_config() == model.get_config()
    for key, value in options.items():
        assert loaded.get_config()[key] == value
    for width in model.widths:
        np.testing.assert_array_equal(loaded(inputs, width=width), model(inputs, width=width))


@pytest.mark.parametrize("options", [dict(film_form="reference"), OPTIONS[-1]],
                         ids=["reference", "identity,no-shortcut-film,private,adapters"])
def test_folding_the_encoding_into_film_is_exact_and_smaller(rng, options):
    model = _perturbed(build_model("resnet8", "oats", width_multiplier=0.25, **options))
    folded = fold_lambda_encoding(model)
    assert folded.encoding_kind == "onehot" and folded.get_config() == dict(model.get_config(), encoding="onehot")
    grid, dim = len(model.lam_grid), model.encoding_dim
    first_layers = [v for v in model.weights if v.path.endswith("hidden_kernel")]
    saved = sum((dim - grid) * v.shape[1] for v in first_layers) + grid * (dim - grid)  # and the codes: K×D → K×K
    count = lambda m: sum(int(np.prod(v.shape)) for v in m.weights)  # noqa: E731
    assert first_layers and count(model) - count(folded) == saved
    lam = np.linspace(0.0, 1.0, 41, dtype="float32")  # grid points and between them
    inputs = {"image": images(rng, len(lam)), "lam": lam}
    for width in model.widths:
        np.testing.assert_allclose(folded(inputs, width=width), model(inputs, width=width), atol=1e-5, rtol=0)
    plain = build_model("resnet8", "slimmable", width_multiplier=0.25)
    assert fold_lambda_encoding(plain) is plain


def test_lambda_table_interpolates_between_knots_and_reads_its_own_row_at_zero():
    table = LambdaTable([[0.0, 0.5, 1.0], [0.0, 0.1, 1.0]], dims=[2, 1], widths=(0.5, 1.0))
    table.build()
    table.tables[0].assign([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]])
    table.zero_rows[0].assign([-1.0, -2.0])
    table.tables[1].assign([[0.0], [1.0], [10.0]])
    lam = np.array([0.0, 1e-3, 0.25, 0.5, 0.75, 1.0, 2.0], "float32")
    np.testing.assert_allclose(table(lam, width=0.5), [[-1, -2], [1.004, 2.008], [2, 4], [3, 6], [4, 5], [5, 4], [5, 4]],
                               rtol=1e-6)
    np.testing.assert_allclose(table(np.array([0.05, 0.1, 0.55], "float32"), width=1.0), [[0.5], [1.0], [5.5]],
                               rtol=1e-6)
    assert LambdaTable.from_config(table.get_config()).get_config() == table.get_config()
    with pytest.raises(ValueError, match="rise strictly from 0 to 1"):
        LambdaTable([[0.0, 0.5, 0.5, 1.0]], dims=[1])
    with pytest.raises(ValueError, match="unknown table storage"):
        LambdaTable([[0.0, 1.0]], dims=[1], storage="int4")


def _tabulated_film(tabulated, lam, width):
    """[γ | β] of every norm, in slot order, as the tabulated network computes them."""
    values = np.asarray(tabulated.film_table(lam, width=width))
    return np.where(values > 0, values, 0.01 * values) if tabulated.film_form == "reference" else values


def _film_of(model, lam, width):
    """[γ | β] of every norm of an MLP network in slot order (γ = 1, β = 0 without FiLM)."""
    code = model.encoding(lam)
    gammas, betas = [], []
    for norm in model.conditional_norms():
        if norm.modulation is None:
            c = channels_at(width, norm.channels)
            gamma, beta = np.ones((len(lam), c)), np.zeros((len(lam), c))
        else:
            gamma, beta = (np.asarray(t) for t in norm.modulation.modulation(code, width))
        gammas.append(gamma)
        betas.append(beta)
    return np.concatenate(gammas + betas, 1)


@pytest.mark.slow
@pytest.mark.parametrize("form,routing", [("reference", "switch"), ("identity", "blend")])
def test_lambda_table_network_is_exact_at_its_knots_and_its_error_bound_is_attained_between(tmp_path, rng, form,
                                                                                              routing):
    model = _perturbed(build_model("resnet8", "oats", width_multiplier=0.25, film_form=form, norm_routing=routing))
    tabulated, facts = tabulate_network(model, points=21)
    knots = np.linspace(0.0, 1.0, 21)
    assert facts["points"] == [21] * 3
    assert tabulated.get_config() == dict(model.get_config(), norm_table_knots=[knots.tolist()] * 3)
    assert not any("/film/" in v.path or "/bn/" in v.path or "encoding" in v.path for v in tabulated.weights)
    # The bound is computed at every kink of the piecewise-linear γ(λ), β(λ), so a dense λ sweep
    # stays below it and comes close to it; at the knots the two networks agree.
    dense = np.linspace(0.0, 1.0, 4001, dtype="float32")
    for width, bound in zip(model.widths, facts["max_abs_error"]):
        deviation = np.abs(_tabulated_film(tabulated, dense, width) - _film_of(model, dense, width)).max()
        assert 1e-4 < bound and 0.9 * bound <= deviation <= bound + 1e-6, (width, deviation, bound)
        on_knots = knots.astype("float32")
        assert np.abs(_tabulated_film(tabulated, on_knots, width) - _film_of(model, on_knots, width)).max() < 1e-5
    inputs = {"image": images(rng, len(knots)), "lam": knots.astype("float32")}
    for width in model.widths:
        np.testing.assert_allclose(tabulated(inputs, width=width), model(inputs, width=width), atol=1e-5, rtol=0)
    # int8 codes per column: a quarter of the table's bytes, off by at most the returned bound.
    stored, errors = store_tables_int8(tabulated)
    error = errors["film_table"]
    assert stored.get_config() == dict(tabulated.get_config(), table_storage="int8")
    # Two values per column: the two end codes, exact up to float32 rounding of the largest value (the
    # fold leaves a route's residual scale large where the routes' averaged affine is small).
    largest = max(np.abs(np.asarray(table)).max() for table in tabulated.route_table.tables)
    assert errors["route_table"] <= 4 * np.finfo(np.float32).eps * largest
    spans = max(float(np.ptp(np.asarray(t), 0).max()) for t in tabulated.film_table.tables)
    assert 0 < error <= spans / 510 + 1e-7
    deviation = max(np.abs(_tabulated_film(stored, dense, w) - _tabulated_film(tabulated, dense, w)).max()
                    for w in model.widths)
    assert 0.2 * error < deviation <= error + 1e-6, (deviation, error)
    saved = str(tmp_path / "saved_model")
    write_saved_model(tabulated, saved, [0.5])
    float32 = TFLiteModel(convert(saved, "float32"))
    for lam in (0.0, 0.001, 0.37, 1.0):
        np.testing.assert_allclose(float32(inputs["image"], lam), tabulated({"image": inputs["image"], "lam": np.full(
            len(knots), lam, "float32")}, width=0.5), atol=1e-4, rtol=0)
    path = tmp_path / "tabulated.keras"
    tabulated.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(inputs, width=0.5), tabulated(inputs, width=0.5))
    with pytest.raises(ValueError, match="tabulated already"):
        tabulate_network(tabulated)
    with pytest.raises(ValueError, match="export form"):
        tabulated(inputs, training=True)
    with pytest.raises(ValueError, match="can be tabulated"):
        build_model("resnet8", "oats", width_multiplier=0.25, private_share=0.25, norm_table_knots=[[0, 1]] * 3)


@pytest.mark.parametrize("fold_width", [1.0, 0.5])
def test_lambda_table_network_folds_each_norms_average_affine_at_its_width_into_its_convolution(rng, fold_width):
    # The int8 files quantize each convolution's output per tensor; normalized per channel (as a plain
    # network's with its batch norm folded in), no channel gets coarse steps for its small spread. Each
    # file holds one width, whose batch norms have statistics of their own.
    model = _perturbed(build_model("resnet8", "oats", width_multiplier=0.25, film_form="identity"))
    x = images(rng, 64)
    z = np.asarray(model.stem(x, width=fold_width), np.float64)
    for v in model.weights:  # both routes' statistics are the batch's own; FiLM is the identity at λ = 0 and 1
        if v.path.startswith(f"{model.name}/stem_norm/bn/") and f"_w{fold_width:g}_moving" in v.path:
            v.assign((z.mean((0, 1, 2)) if v.path.endswith("mean") else z.var((0, 1, 2))).astype("float32"))
        if v.path.startswith(f"{model.name}/stem_norm/film/"):
            v.assign(np.zeros(v.shape, "float32"))
    tabulated, _ = tabulate_network(model, points=11, fold_width=fold_width)
    folded = np.asarray(tabulated.stem(x, width=fold_width), np.float64)
    np.testing.assert_allclose(folded.mean((0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(folded.var((0, 1, 2)), 1.0, atol=1e-3)
    assert np.abs(z.mean((0, 1, 2))).max() > 0.05 and np.abs(z.var((0, 1, 2)) - 1).max() > 0.05  # z was not normalized
    inputs = {"image": x, "lam": np.repeat(np.linspace(0.0, 1.0, 11, dtype="float32"), 6)[:64]}  # at the knots
    for width in model.widths:  # the function is unchanged at every width
        np.testing.assert_allclose(tabulated(inputs, width=width), model(inputs, width=width), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="width"):
        tabulate_network(model, points=11, fold_width=0.6)


def test_files_from_before_the_lambda_tables_still_load():
    model = build_model("resnet8", "oats", width_multiplier=0.25)
    assert OATNetwork.from_config(dict(model.get_config(), film_hidden=True)).get_config() == model.get_config()
    with pytest.raises(ValueError, match="replaced by λ tables"):
        OATNetwork.from_config(dict(model.get_config(), film_hidden=False))


def test_export_takes_the_lambda_table_only_where_it_is_smaller_and_within_tolerance():
    narrow = _perturbed(build_model("resnet8", "oats", width_multiplier=0.25))
    served, film = compact_network(narrow)
    assert served.film_table is None and film["representation"].startswith("FiLM MLP")
    table = film["table_not_used"]  # within 1e-3, but only with more points than the MLP's 2C hidden units
    assert max(table["max_abs_error"]) <= 1e-3 and table["weights_at_full_width"] > film["weights_at_full_width"]
    served, film = compact_network(narrow, tolerance=1.0)  # the coarsest table is then small enough
    assert served.film_table is not None and film["points"] == [TABLE_POINT_CHOICES[0]] * 3
    wide = _perturbed(build_model("resnet8", "oats", width_multiplier=2.0), seed=1)
    _, facts = tabulate_network(wide)
    tolerance = 2 * max(facts["max_abs_error"])
    served, film = compact_network(wide, tolerance=tolerance)
    assert served.film_table is not None and max(film["max_abs_error"]) <= tolerance
    assert film["weights_at_full_width"] == lambda_path_weight_count(served) < film["instead_of"]["weights_at_full_width"]
    # Per width the fewest points within the tolerance: one choice fewer is not.
    for width, points, error in zip(wide.widths, film["points"], film["max_abs_error"]):
        assert error <= tolerance and points in TABLE_POINT_CHOICES
        if points > TABLE_POINT_CHOICES[0]:
            fewer = TABLE_POINT_CHOICES[TABLE_POINT_CHOICES.index(points) - 1]
            assert tabulate_network(wide, fewer)[1]["max_abs_error"][wide.widths.index(width)] > tolerance
    served, film = compact_network(wide, tolerance=max(facts["max_abs_error"]) / 2)
    assert served.film_table is None and max(film["table_not_used"]["max_abs_error"]) > film["table_not_used"]["tolerance"]
    assert compact_network(wide, table_points=0)[0].film_table is None


@pytest.mark.slow
def test_int8_file_holds_the_lambda_table_in_int8_codes(tmp_path, rng):
    """A network whose exporter takes λ tables: its int8 file stores the tables as int8 codes, so it is
    under 0.4× the float32 file (convolutions and tables a quarter each), and the manifest adds their
    rounding to the table's error."""
    wide = build_model("resnet8", "oat", width_multiplier=2.0, film_form="identity")  # γ = 1, β = 0: 11 knots suffice
    for v in wide.weights:
        if "adversarial" in v.path and "moving_mean" in v.path:
            v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
    calibration = representative_dataset(images(rng, 32), S1, count=32)
    manifest = export_bundle(wide, str(tmp_path / "bundle"), [str(i) for i in range(10)], calibration,
                             formats=("float32", "int8"))
    film = manifest["film"]
    assert film["representation"].startswith("λ tables")
    assert all(e <= r <= e + 0.01 for e, r in zip(film["max_abs_error"], film["int8_files"]["max_abs_error"]))
    size = {f["format"]: f["size_bytes"] for f in manifest["files"]}
    assert size["int8"] < 0.4 * size["float32"], size
    table = TFLiteModel(str(tmp_path / "bundle" / "width_1" / "model_int8.tflite")).interpreter.get_tensor_details()
    assert film["points"] == [TABLE_POINT_CHOICES[0]]
    assert any(t["dtype"] == np.int8 and t["shape"][0] == TABLE_POINT_CHOICES[0] for t in table)


@pytest.mark.slow
@pytest.mark.parametrize("options", [OPTIONS[-1], dict(norm_routing="blend"), dict(film_form="identity", film_table=True),
                                     dict(film_form="identity", shortcut_film=False, film_table="int8")],
                         ids=["identity,no-shortcut-film,private,adapters", "blend", "identity,lambda-tables",
                              "identity,no-shortcut-film,lambda-tables in int8 codes"])
def test_options_export_with_parity_and_lambda_routing(tmp_path, rng, options):
    options = dict(options)
    table = options.pop("film_table", False)
    model = _perturbed(build_model("resnet8", "oats", width_multiplier=0.25, **options))
    model = tabulate_network(model)[0] if table else model
    model = store_tables_int8(model)[0] if table == "int8" else model
    width = 0.5
    saved = str(tmp_path / "saved_model")
    write_saved_model(model, saved, [width])
    x = images(rng, 16)
    lambdas = (0.0, 0.001, 0.01, 0.2, 1.0)
    reference = {lam: np.asarray(model({"image": x, "lam": np.full(16, lam, "float32")}, width=width))
                 for lam in lambdas}
    float32 = TFLiteModel(convert(saved, "float32"))
    for lam in lambdas:
        np.testing.assert_allclose(float32(x, lam), reference[lam], atol=1e-4)
    if options.get("norm_routing") == "blend":
        return  # no route switch at λ > 0 to check: λ moves the norms continuously
    assert np.abs(reference[0.0] - reference[0.001]).max() > 0.05  # the two routes differ
    calibration = representative_dataset(images(rng, 32), S1, count=32)
    for fmt in ("float16", "dynamic_int8", "int8"):
        quantized = TFLiteModel(convert(saved, fmt, representative=calibration))
        for lam, other in ((0.0, 0.001), (0.001, 0.0), (0.01, 0.0), (1.0, 0.0)):
            out = quantized(x, lam)
            own, wrong = np.abs(out - reference[lam]).mean(), np.abs(out - reference[other]).mean()
            assert own < wrong, f"{fmt} λ={lam}: {own:.4f} vs other route {wrong:.4f}"


def test_channel_gate_keeps_private_channels_for_each_end():
    clean, robust = private_masks(16, 0.25)
    assert clean.sum() == robust.sum() == 4 and not (clean * robust).any()
    assert private_masks(8, 0.25)[0].sum() == 2  # a slimmed prefix keeps the proportions
    gate = np.asarray(LambdaChannelGate(16, 0.25, widths=(0.5, 1.0))(np.array([0.0, 0.4, 1.0], "float32")))
    np.testing.assert_allclose(gate[:, clean > 0], [[1] * 4, [0.6] * 4, [0] * 4], atol=1e-7)
    np.testing.assert_allclose(gate[:, robust > 0], [[0] * 4, [0.4] * 4, [1] * 4], atol=1e-7)
    np.testing.assert_array_equal(gate[:, (clean + robust) == 0], 1.0)
    assert LambdaChannelGate(16, 0.25, widths=(0.5, 1.0))(np.zeros(2, "float32"), width=0.5).shape == (2, 8)
    with pytest.raises(ValueError, match=r"\(0, 0.5\]"):
        LambdaChannelGate(16, 0.6)


@pytest.mark.parametrize("lam,private", [(1.0, "clean"), (0.0, "robust")])
def test_private_channels_get_no_gradient_from_the_other_end(rng, lam, private):
    model = build_model("resnet20", "oat", width_multiplier=0.25, private_share=0.25)
    stem = next(v for v in model.trainable_weights if v.path.endswith("stem/kernel"))
    mask = private_masks(stem.shape[-1], 0.25)[0 if private == "clean" else 1] > 0
    inputs = {"image": images(rng, 4), "lam": np.full(4, lam, "float32")}
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(inputs, training=True) ** 2)
    grad = np.asarray(tape.gradient(loss, stem))
    assert not grad[..., mask].any() and grad[..., ~mask].any()


def test_adapters_start_as_the_plain_network_and_each_end_trains_its_own_branch(rng):
    plain = build_model("resnet20", "oat", width_multiplier=0.25, film_form="identity")
    adapted = build_model("resnet20", "oat", width_multiplier=0.25, film_form="identity", adapter_share=0.25)
    _copy_shared_weights(plain, adapted)
    inputs = {"image": images(rng, 4), "lam": np.array([0.0, 0.3, 0.7, 1.0], "float32")}
    np.testing.assert_allclose(adapted(inputs), plain(inputs), atol=1e-5)
    _perturbed(adapted)
    down = next(v for v in adapted.trainable_weights if v.path.endswith("stage1_block1/adapter1/down/kernel"))
    rank = down.shape[-1] // 2
    for lam, idle in ((0.0, slice(rank, None)), (1.0, slice(0, rank))):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(adapted({"image": inputs["image"], "lam": np.full(4, lam, "float32")},
                                         training=True) ** 2)
        grad = np.asarray(tape.gradient(loss, down))
        assert not grad[..., idle].any() and grad.any(), lam
    with pytest.raises(ValueError, match="rank must be at least 1"):
        LambdaAdapter(8, 3, rank=0)


def test_clean_share_sets_the_lambda_zero_samples_per_batch():
    assert clean_count(128, S1) == 22 and clean_count(128, S1, clean_share=0.5) == 64
    assert clean_count(128, S1, clean_share=0.001) == 1 and clean_count(128, S1, clean_share=0.999) == 127
    lam = np.asarray(LambdaSampler(S1, 64, clean_share=0.25)(tf.constant([1, 2], tf.int64)))
    assert (lam[:16] == 0).all() and (lam[16:] > 0).all()


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(film_form="centred"), "unknown film_form"),
        (dict(norm_routing="soft"), "unknown norm_routing"),
        (dict(clean_share=1.0), r"clean_share must lie in \(0, 1\)"),
        (dict(clean_share=float("nan")), r"clean_share must lie in \(0, 1\)"),
        (dict(clean_share=0.5, lam_set=(0.5, 1.0)), "needs a lam_set with 0"),
        (dict(film_lr_scale=0.0), "film_lr_scale must be > 0"),
        (dict(private_share=0.6), r"private_share must lie in \[0, 0.5\]"),
        (dict(private_share=0.25, method="pgdat"), "needs a λ-conditioned method"),
        (dict(adapter_share=0.25, method="pgdats"), "needs a λ-conditioned method"),
    ],
)
def test_bad_conditioning_configuration(overrides, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**dict(dict(method="oat", run_dir="unused"), **overrides)).validate()


def test_presets_carry_their_recipe_and_a_recipe_can_be_swapped():
    from oat_tf.config import RECIPES, preset

    assert RECIPES["paper"]["shortcut_film"] is False and RECIPES["paper"]["film_form"] == "reference"
    assert RECIPES["port"] == dict(RECIPES["paper"], shortcut_film=True, width_loss="mean")
    assert RECIPES["paper"]["width_loss"] == RECIPES["cpu"]["width_loss"] == "sum"
    oat = TrainConfig(**dict(preset("cpu"), method="oat", run_dir="unused")).validate()
    assert oat.width_loss == "mean"  # one width: the same loss, recorded as before the option existed
    assert RECIPES["quickstart"] == dict(RECIPES["cpu"], clean_share=0.6)
    for name, recipe_name in (("paper", "paper"), ("cpu", "quickstart")):
        values = preset(name)
        recipe = {k: v for k, v in RECIPES[recipe_name].items() if k != "epoch_scale"}
        assert {k: values[k] for k in recipe} == recipe
        TrainConfig(**dict(values, method="oats", run_dir="unused")).validate()
    swapped = preset("cpu", recipe="paper")
    assert {k: swapped[k] for k in RECIPES["paper"] if k != "epoch_scale"} == {
        k: v for k, v in RECIPES["paper"].items() if k != "epoch_scale"}
    assert swapped["epochs"] == 6  # the cpu preset's 6 epochs × the paper recipe's scale 1
    with pytest.raises(ValueError, match="unknown recipe"):
        preset("cpu", recipe="best")


def test_a_recipe_with_a_cheaper_step_scales_the_epochs(monkeypatch):
    from oat_tf.config import RECIPES, preset, recipe_fields

    monkeypatch.setitem(RECIPES, "cheap", dict(RECIPES["paper"], epoch_scale=1.4))
    assert recipe_fields("cheap", 5)["epochs"] == 7 and "epoch_scale" not in recipe_fields("cheap", 5)
    assert preset("paper", recipe="cheap")["epochs"] == 280
