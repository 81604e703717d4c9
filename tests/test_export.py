"""Export: per-width SavedModel/TFLite bundles, parity of every format with Keras, λ routing, the picker."""

import hashlib
import json
import os
import sys

import numpy as np
import pytest

from oat_tf import export as export_lib
from oat_tf.config import TrainConfig
from oat_tf.export import FORMATS, TFLiteModel
from oat_tf.folding import compact_network
from oat_tf.picker import pick
from oat_tf.trainer import Trainer, load_run
from tests.conftest import CIFAR10, ROOT, run_step

WIDTHS = (0.5, 1.0)
EVAL_LAMBDAS = (0.0, 0.2, 1.0)


pytestmark = pytest.mark.slow  # every test here exports a trained network


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A briefly trained OATS run: half-width ResNet-8, widths 0.5 and 1, 2 epochs on 8k real images.
    ε = 2/255 for training and the identity FiLM (the reference FiLM starts with its features almost
    switched off and leaves a 2-epoch model near chance), so that the network learns enough in about
    a minute to have real margins (SA 35–43 %); the paper's switch routing, whose routes the tests check."""
    import keras

    run_dir = tmp_path_factory.mktemp("oats_run")
    keras.utils.set_random_seed(0)
    Trainer(TrainConfig(method="oats", dataset="cifar10", data_dir=CIFAR10, run_dir=str(run_dir), model="resnet8",
                        width_multiplier=0.5, widths=WIDTHS, film_form="identity", epochs=2, batch_size=128,
                        train_attack="fgsm-rs",
                        epsilon_255=2.0, train_examples=8192, eval_examples=100, eval_attack="fgsm",
                        eval_every=2, eval_lambdas=(0.0, 1.0))).train()  # the bundle's own evaluation is tested
    return str(run_dir)


@pytest.fixture(scope="module")
def bundle(run_dir, tmp_path_factory):
    """The bundle written by the command-line exporter (small evaluation)."""
    out = str(tmp_path_factory.mktemp("bundles") / "oats")
    command = [sys.executable, os.path.join(ROOT, "export", "export.py"), f"--checkpoint={run_dir}", f"--out={out}",
               f"--data_dir={CIFAR10}", "--representative_examples=100", "--eval_examples=100",
               "--robust_examples=50", "--eval_attack=pgd3", "--eval_lambdas=0,0.2,1"]
    result = run_step("export/export.py", command, timeout=900, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "manifest.json")) as f:
        return out, json.load(f)


@pytest.fixture(scope="module")
def model(run_dir):
    return load_run(run_dir)[0]


@pytest.fixture(scope="module")
def served(model):
    """The network the files hold: the trained one with its λ path in the form the manifest names."""
    return compact_network(model)[0]


def _file(bundle, width, fmt):
    return os.path.join(bundle[0], f"width_{width:g}", f"model_{fmt}.tflite")


def _keras_logits(model, images, lam, width):
    return np.asarray(model({"image": images, "lam": np.asarray(lam, np.float32)}, width=width, training=False))


def test_manifest_lists_every_file_with_its_hash_and_the_measured_table(bundle):
    root, manifest = bundle
    assert manifest["widths"] == list(WIDTHS) and len(manifest["class_names"]) == 10
    assert manifest["input"]["image"]["shape"] == [None, 32, 32, 3] and manifest["lam"]["range"] == [0.0, 1.0]
    assert manifest["lam"]["encoding"] == "orthogonal"
    film = manifest["film"]  # the smaller of the two forms that is within the tolerance
    if "instead_of" in film:
        assert film["representation"].startswith("λ tables") and max(film["max_abs_error"]) <= film["tolerance"]
        assert 0 < film["weights_at_full_width"] < film["instead_of"]["weights_at_full_width"]
        rounded = film["int8_files"]["max_abs_error"]  # the int8 files' tables in int8 codes add their rounding
        assert all(a <= b for a, b in zip(film["max_abs_error"], rounded))
    else:
        assert film["representation"].startswith("FiLM MLP") and "folded" in film["representation"]
        table = film["table_not_used"]
        assert table["weights_at_full_width"] >= film["weights_at_full_width"] > 0 or max(table["max_abs_error"]) > table["tolerance"]
    formats = {(f["width"], f["format"]) for f in manifest["files"]}
    assert formats == {(w, f) for w in WIDTHS for f in ("saved_model",) + FORMATS}
    for entry in manifest["files"]:
        path = os.path.join(root, entry["path"])
        assert os.path.exists(path) and entry["size_bytes"] > 0
        if "sha256" in entry:
            assert hashlib.sha256(open(path, "rb").read()).hexdigest() == entry["sha256"]
    rows = manifest["evaluation"]["rows"]
    assert {(r["width"], r["lambda"], r["format"]) for r in rows} == {
        (w, lam, f) for w in WIDTHS for lam in EVAL_LAMBDAS for f in ("saved_model",) + FORMATS}
    assert all(0 <= r["ra"] <= 1 and 0 <= r["sa"] <= 1 and r["n_robust"] == 50 for r in rows)
    assert "transfer" in manifest["evaluation"]["method"] and manifest["commit"]
    combined = manifest["combined_file"]
    assert combined["size_bytes"] > 0 and combined["kept"] == (combined["ratio"] <= 1.1)
    assert os.path.exists(os.path.join(root, export_lib.COMBINED_FILE)) == combined["kept"]
    # The half-width file holds about a quarter of the full width's weights.
    size = {(f["width"], f["format"]): f["size_bytes"] for f in manifest["files"]}
    assert size[(0.5, "float32")] < 0.5 * size[(1.0, "float32")]
    # int8 shrinks the convolutions 4×; the FiLM MLPs stay float32. Dynamic-range int8 stores every
    # weight tensor of 1,024 elements or more as int8: most of the weights.
    assert size[(1.0, "int8")] < size[(1.0, "float32")]
    weights = {fmt: _constant_elements(_file(bundle, 1.0, fmt)) for fmt in ("float32", "dynamic_int8")}
    assert weights["dynamic_int8"].get(np.int8, 0) > 0.75 * weights["float32"][np.float32]


def _constant_elements(path):
    """{dtype: elements} of a TFLite file's tensors of static shape (its weights; activations have a batch of -1)."""
    elements = {}
    for tensor in TFLiteModel(path).interpreter.get_tensor_details():
        if tensor["shape_signature"].size and -1 not in tensor["shape_signature"]:
            elements[tensor["dtype"]] = elements.get(tensor["dtype"], 0) + int(np.prod(tensor["shape"]))
    return elements


@pytest.mark.parametrize("width", WIDTHS)
def test_float_files_match_keras_at_grid_and_off_grid_lambdas(bundle, model, served, width, rng):
    """Each file computes its Keras network (`served`); that equals the trained network at the λ
    of the training grid, and between them is off by at most the λ table's bound, tested in
    test_conditioning."""
    images = rng.random((8, 32, 32, 3), dtype=np.float32)
    float32 = TFLiteModel(_file(bundle, width, "float32"))
    for lam in (0.0, 0.01, 0.1, 0.15, 0.37, 0.4, 0.93, 1.0):
        expected = _keras_logits(served, images, np.full(8, lam), width)
        # float16 rounds every stored weight to 11 significant bits: its error scales with the logits.
        for fmt, tolerance in (("float32", 1e-4), ("float16", 2e-2 * max(1.0, np.abs(expected).max()))):
            logits = TFLiteModel(_file(bundle, width, fmt))(images, lam)
            assert np.isfinite(logits).all()
            np.testing.assert_allclose(logits, expected, atol=tolerance, rtol=0, err_msg=f"{fmt} λ={lam}")
    for lam in model.lam_grid:
        np.testing.assert_allclose(float32(images, lam), _keras_logits(model, images, np.full(8, lam), width),
                                   atol=1e-4, rtol=0, err_msg=f"trained network, λ={lam}")
    mixed = rng.choice([0.0, 0.05, 0.2, 0.8, 1.0], 8).astype(np.float32)
    np.testing.assert_allclose(float32(images, mixed), _keras_logits(served, images, mixed, width), atol=1e-4, rtol=0)


def test_int8_files_agree_with_the_float_model_on_real_images(bundle, model, cifar10):
    """Top-1 agreement of the full-int8 and dynamic-int8 files with the float model on 1,000 real test images.

    This briefly trained model (SA 35–43 %) has many decisions that are near-ties, which any
    rounding flips, so the 97 % bar is applied to the images with a decision
    (top-2 logit margin above the median; measured 100 %); all images must agree on ≥ 95 %
    (measured 97.5–98.4 %, five standard errors above). A longer-trained model's agreement is in
    `results/bench/int8_routes_*.json`."""
    images = cifar10["test"][0][:1000]
    for width, fmt in [(w, f) for w in WIDTHS for f in ("int8", "dynamic_int8")]:
        quantized = TFLiteModel(_file(bundle, width, fmt))
        for lam in (0.0, 0.2, 1.0):
            logits = _keras_logits(model, images, np.full(1000, lam), width)
            top2 = np.sort(logits, 1)[:, -2:]
            decided = (top2[:, 1] - top2[:, 0]) > np.median(top2[:, 1] - top2[:, 0])
            agree = np.argmax(quantized(images, lam), 1) == np.argmax(logits, 1)
            assert agree[decided].mean() >= 0.97 and agree.mean() >= 0.95, (
                f"{fmt} width {width} λ={lam}: agreement {agree[decided].mean():.3f} (decided), {agree.mean():.3f} (all)")


def test_every_format_routes_lambda_zero_clean_and_small_lambdas_adversarial(bundle, model, cifar10):
    """λ = 0.001 and 0.01 have almost the same FiLM code as λ = 0, so the batch norm route makes
    their difference. Every file: λ = 0.001 and 0.01 (one route) agree far better with each other
    than with λ = 0 — a comparison within the file, where its quantization error is common to one
    route. The float files also land nearer the Keras output of their own route than the other's
    (an int8 file's error is as large as this briefly trained model's route difference)."""
    images = cifar10["test"][0][:64]
    small = (0.001, 0.01)
    for width in WIDTHS:
        reference = {lam: _keras_logits(model, images, np.full(64, lam), width) for lam in (0.0, *small, 1.0)}
        route_step = np.abs(reference[0.01] - reference[0.0]).mean()
        assert route_step > 3 * np.abs(reference[0.01] - reference[0.001]).mean()  # the routes differ
        for fmt in FORMATS:
            file = TFLiteModel(_file(bundle, width, fmt))
            outputs = {lam: file(images, lam) for lam in reference}
            same = np.abs(outputs[0.01] - outputs[0.001]).mean()
            across = np.abs(outputs[0.01] - outputs[0.0]).mean()
            assert same < 0.5 * across and across > 0.5 * route_step, (
                f"{fmt} width {width}: λ 0.001↔0.01 {same:.4f}, 0↔0.01 {across:.4f}, Keras route step {route_step:.4f}")
            if fmt in ("float32", "float16"):
                for lam, other in ((0.0, 0.01), (0.001, 0.0), (0.01, 0.0), (1.0, 0.0)):
                    own = np.abs(outputs[lam] - reference[lam]).mean()
                    wrong = np.abs(outputs[lam] - reference[other]).mean()
                    assert own < wrong, f"{fmt} width {width} λ={lam}: {own:.4f} vs other route {wrong:.4f}"
            # Documented: λ is clamped to [0, 1] and NaN counts as 0.
            for outside, inside in ((1.7, 1.0), (-0.5, 0.0), (np.nan, 0.0)):
                np.testing.assert_allclose(file(images, outside), outputs[inside], atol=1e-5, err_msg=f"λ={outside}")


def test_saved_model_reloads_in_a_fresh_process(bundle, served, rng, tmp_path):
    images = rng.random((4, 32, 32, 3), dtype=np.float32)
    lam = np.array([0.0, 0.15, 0.4, 1.0], np.float32)
    np.savez(tmp_path / "inputs.npz", images=images, lam=lam)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "data = np.load(sys.argv[2])\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = serve(image=tf.constant(data['images']), lam=tf.constant(data['lam']))\n"
        "np.save(sys.argv[3], out['logits'].numpy())\n"
    )
    for width in WIDTHS:
        path = os.path.join(bundle[0], f"width_{width:g}", "saved_model")
        result = run_step(f"reloading {path} in a fresh process", [sys.executable, "-c", script, path,
                          str(tmp_path / "inputs.npz"), str(tmp_path / "out.npy")], timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        np.testing.assert_allclose(np.load(tmp_path / "out.npy"), _keras_logits(served, images, lam, width),
                                   atol=1e-4, rtol=0)


def test_exported_graph_costs_one_multiply_add_per_norm(bundle, model):
    """The dual BN and FiLM fold into one per-sample affine: one MUL over activations per norm."""
    from oat_tf.layers.conditional_norm import ConditionalNorm

    norms = [layer for layer in model._flatten_layers() if isinstance(layer, ConditionalNorm)]
    interpreter = TFLiteModel(_file(bundle, 1.0, "float32")).interpreter
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    activation_muls = [op for op in interpreter._get_ops_details()  # no public op listing in LiteRT
                       if op["op_name"] == "MUL" and len(tensors[op["outputs"][0]]["shape_signature"]) == 4]
    assert norms and len(activation_muls) == len(norms)


def test_latency_bench_puts_accuracy_size_and_latency_side_by_side(bundle, tmp_path):
    root, manifest = bundle
    out = tmp_path / "latency.json"
    command = [sys.executable, os.path.join(ROOT, "bench", "tflite_latency.py"), f"--bundle={root}", "--threads=1",
               "--runs=3", f"--out={out}"]
    result = run_step("bench/tflite_latency.py", command, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["film"] == manifest["film"] and report["accuracy_method"] == manifest["evaluation"]["method"]
    assert {(r["width"], r["format"]) for r in report["results"]} == {(w, f) for w in WIDTHS for f in FORMATS}
    for row in report["results"]:
        expected = {str(r["lambda"]): {k: r[k] for k in ("sa", "ra", "agreement")}
                    for r in manifest["evaluation"]["rows"] if r["width"] == row["width"] and r["format"] == row["format"]}
        assert row["accuracy"] == expected and len(expected) == len(EVAL_LAMBDAS)
        assert row["median_ms"] > 0 and row["size_bytes"] > 0


def test_picker_meets_the_target_or_says_why(bundle):
    manifest = bundle[1]
    rows = manifest["evaluation"]["rows"]
    floor = min(r["sa"] for r in rows)
    choice = pick(manifest, min_sa=floor)
    assert choice["sa"] >= floor and choice["ra"] == max(r["ra"] for r in rows)
    robust = pick(os.path.join(bundle[0], "manifest.json"), min_ra=0.0, formats=["int8"])
    assert robust["format"] == "int8" and robust["sa"] == max(r["sa"] for r in rows if r["format"] == "int8")
    weighted = pick(manifest, ra_weight=0.3, widths=[0.5])
    assert weighted["width"] == 0.5
    with pytest.raises(ValueError, match="best on offer"):
        pick(manifest, min_sa=1.0, min_ra=1.0)
    with pytest.raises(ValueError, match="min_sa"):
        pick(manifest, min_sa=1.5)


def test_a_bundle_without_float32_has_no_combined_file(model, tmp_path):
    """The combined file is float32 and sized against the full width's float32 file; without float32
    files there is none, and the other formats are written for every width."""
    manifest = export_lib.export_bundle(model, str(tmp_path / "b"), [str(i) for i in range(10)], None,
                                        formats=["float16"])
    assert manifest["combined_file"] is None
    assert sorted((f["width"], f["format"]) for f in manifest["files"]) == sorted(
        (w, f) for w in WIDTHS for f in ("float16", "saved_model"))


def test_bad_inputs_fail_clearly_and_leave_no_bundle(run_dir, bundle, model, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not a training run"):
        load_run(str(tmp_path))
    other = tmp_path / "other"
    os.makedirs(other / "checkpoints")
    for name in os.listdir(os.path.join(run_dir, "checkpoints")):
        with open(os.path.join(run_dir, "checkpoints", name), "rb") as src:
            (other / "checkpoints" / name).write_bytes(src.read())
    config = json.load(open(os.path.join(run_dir, "config.json")))
    (other / "config.json").write_text(json.dumps(dict(config, model="resnet32")))
    (other / "classes.json").write_text(open(os.path.join(run_dir, "classes.json")).read())
    with pytest.raises(ValueError, match="does not hold"):
        load_run(str(other))
    (other / "config.json").write_text(json.dumps(config))
    for data_file in other.glob("checkpoints/*.data-*"):
        data_file.write_bytes(data_file.read_bytes()[:1000])
    with pytest.raises(ValueError, match="is unreadable or does not hold"):
        load_run(str(other))
    (other / "classes.json").write_text('["cat", ')
    with pytest.raises(ValueError, match=r"classes.json' is not valid JSON"):
        load_run(str(other))

    tflite = TFLiteModel(_file(bundle, 1.0, "float32"))
    with pytest.raises(ValueError, match=r"image must have shape \(batch, 32, 32, 3\) for this file, got \(2, 28, 28, 3\)"):
        tflite(np.zeros((2, 28, 28, 3), np.float32), 0.0)
    with pytest.raises(ValueError, match=r"lam must be one number or one per image \(2\), got shape \(3,\)"):
        tflite(np.zeros((2, 32, 32, 3), np.float32), [0.0, 0.5, 1.0])

    classes = [str(i) for i in range(10)]
    representative = export_lib.representative_dataset(np.zeros((4, 32, 32, 3), np.float32), model.lam_grid, 4)
    with pytest.raises(ValueError, match="width"):
        export_lib.export_bundle(model, str(tmp_path / "b"), classes, representative, widths=[0.75])
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write"):
        export_lib.export_bundle(model, str(blocker / "b"), classes, representative)
    with pytest.raises(ValueError, match="exists"):
        export_lib.export_bundle(model, str(tmp_path), classes, representative)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_lib, "convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_lib.export_bundle(model, str(tmp_path / "b"), classes, representative, formats=["float32"])
    assert not (tmp_path / "b").exists() and not [n for n in os.listdir(tmp_path) if n.startswith(".export-")]
