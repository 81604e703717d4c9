"""Per-width SavedModel and TFLite bundles with λ as a runtime input.

A bundle directory holds, for every exported width α:

    width_<α>/saved_model/               serving_default(image, lam) → {"logits", "probabilities"}
    width_<α>/model_<format>.tflite      format ∈ FORMATS
    all_widths_float32.tflite            one file, one signature per width (with float32, if ≤ 1.1× the full width's)
    manifest.json                        widths, λ range and grid, input spec, classes, files, SA/RA table

`image` is (batch, S, S, 3) float32 RGB in [0, 1], `lam` is (batch,) float32; the batch
size is dynamic. λ is clamped to [0, 1] inside the graph (NaN counts as 0), λ = 0 selects
the clean batch norm and λ > 0 the adversarial one, and λ between grid points uses the
interpolated encoding. Every file holds the λ path in its smaller exact-enough form
(`oat_tf.folding.compact_network`): FiLM's MLP with the orthogonal λ encoding folded into its first
layer (exact), or, for wide networks, λ tables read once per call at the top of the graph (per
width the fewest uniform λ knots, plus the training grid, whose linear interpolation is within the
manifest's `film.max_abs_error` ≤ 1e-3 of γ, β; exact at the knots; with tables, each width's
files also hold that width's batch norms folded into the convolutions, exact in float). In int8 files the
convolutions are int8 while the λ path (route, encoding, FiLM or tables) and the per-sample
affines stay float32 (`INT8_FLOAT_OPS`), so quantization cannot move a sample to the other route.
"""

import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from oat_tf.activation_ranges import minimize_activation_mse
from oat_tf.folding import FILM_TABLE_POINTS, compact_network, store_tables_int8
from oat_tf.provenance import file_sha256

FORMATS = ("float32", "float16", "dynamic_int8", "int8")
ACTIVATION_RANGES = ("minmax", "mse")  # how full int8 sets each activation's range (see `convert`)
# In "int8" these ops stay float32: the λ path (clamp, route test, encoding, FiLM MLPs or λ tables), the
# per-sample affine of each norm, residual adds and the softmax. Convolutions (nearly all of the
# compute) run in int8. Quantizing λ would send λ ≤ 0.002 down the clean route, and int8 FiLM
# scales cost ~2 pp of top-1 agreement with the float model.
INT8_FLOAT_OPS = ("ADD", "SUB", "MUL", "DIV", "MINIMUM", "MAXIMUM", "RELU", "RELU_0_TO_1", "RELU_N1_TO_1",
                  "LEAKY_RELU", "GREATER", "GREATER_EQUAL", "LESS", "SELECT_V2", "RESHAPE", "EXPAND_DIMS", "GATHER",
                  "SUM", "SPLIT", "SPLIT_V", "FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX")
INT8_TABLE_FORMATS = ("dynamic_int8", "int8")  # formats converted from the network with int8-coded λ tables
COMBINED_FILE = "all_widths_float32.tflite"
COMBINED_SIZE_LIMIT = 1.1  # × the full-width float32 file


def width_tag(width):
    return f"width_{float(width):g}"


def serving_function(model, width):
    """A `tf.function` (image (B, S, S, 3), lam (B,)) → {"logits", "probabilities"} at `width`."""
    size = model.image_size
    signature = [
        tf.TensorSpec([None, size, size, 3], tf.float32, name="image"),
        tf.TensorSpec([None], tf.float32, name="lam"),
    ]

    @tf.function(input_signature=signature)
    def serve(image, lam):
        lam = tf.where(lam > 0.0, tf.minimum(lam, 1.0), 0.0)  # clamp to [0, 1]; NaN → 0
        logits = model({"image": image, "lam": lam}, width=width, training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    return serve


def write_saved_model(model, path, widths):
    """A SavedModel with one signature per width; a single width is `serving_default`."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    for width in widths:
        name = "serving_default" if len(widths) == 1 else width_tag(width)
        archive.add_endpoint(name, serving_function(model, width))
    archive.write_out(path, verbose=False)


def convert(saved_model_dir, fmt, signature_keys=None, representative=None, activation_ranges="minmax"):
    """TFLite flatbuffer bytes in `fmt` (one of FORMATS), builtin ops only.

    `representative` (full int8 only): a callable returning an iterator of
    {"image": (1, S, S, 3), "lam": (1,)} dicts drawn from the training split.
    `activation_ranges` (full int8 only): "minmax", the calibration's extremes, or "mse", the
    ranges of least quantization error on the calibration values (`oat_tf.activation_ranges`).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {list(FORMATS)}.")
    if activation_ranges not in ACTIVATION_RANGES:
        raise ValueError(f"unknown activation_ranges {activation_ranges!r}; choose from {list(ACTIVATION_RANGES)}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=signature_keys)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if fmt != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if fmt == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if fmt == "int8":
        if representative is None:
            raise ValueError("full int8 needs a representative dataset.")
        converter.representative_dataset = representative
        # Selective quantization is what the quantization debugger offers for keeping ops float.
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(INT8_FLOAT_OPS)),
        )
        if activation_ranges == "mse":
            debugger.calibrated_model = minimize_activation_mse(debugger.calibrated_model, representative)[0]
        return debugger.get_nondebug_quantized_model()
    return converter.convert()


class TFLiteModel:
    """Runs one signature of a TFLite file with the LiteRT interpreter: logits for (images, λ).

    Images must match the file's (H, W, C); λ is one number or one per image. λ values are
    not checked here: the file clamps them to [0, 1] and reads NaN as 0.
    """

    def __init__(self, path_or_bytes, signature="serving_default", num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        source = dict(model_content=path_or_bytes) if isinstance(path_or_bytes, bytes) else dict(model_path=path_or_bytes)
        self.interpreter = Interpreter(num_threads=num_threads, **source)
        self.runner = self.interpreter.get_signature_runner(signature)
        self.image_shape = tuple(int(d) for d in self.runner.get_input_details()["image"]["shape_signature"][1:])

    def __call__(self, images, lam, batch_size=100):
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[1:] != self.image_shape:
            raise ValueError(f"image must have shape (batch, {', '.join(map(str, self.image_shape))}) for this file, "
                             f"got {images.shape}.")
        lam = np.asarray(lam, np.float32)
        if lam.ndim > 1 or (lam.ndim == 1 and len(lam) != len(images)):
            raise ValueError(f"lam must be one number or one per image ({len(images)}), got shape {lam.shape}.")
        lam = np.broadcast_to(lam, (len(images),))
        outputs = [
            self.runner(image=images[i : i + batch_size], lam=np.ascontiguousarray(lam[i : i + batch_size]))["logits"]
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(outputs)

    def latency_ms(self, image, lam, runs=200, warmup=20):
        """Median and 90th percentile wall time (ms) of one invocation on `image`, `lam` after `warmup` calls."""
        import time

        for _ in range(warmup):
            self.runner(image=image, lam=lam)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.runner(image=image, lam=lam)
            times.append(time.perf_counter() - start)
        times = np.asarray(times) * 1e3
        return dict(median_ms=round(float(np.median(times)), 3), p90_ms=round(float(np.percentile(times, 90)), 3))


def representative_dataset(images, lam_grid, count=200, seed=0):
    """Calibration inputs for full int8: `count` training images, each with a λ from the grid or
    drawn uniformly, so that the calibrated λ range is all of [0, 1]."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=min(count, len(images)), replace=False)
    grid = np.asarray(sorted(set(lam_grid) | {0.0, 1.0}), np.float32)
    lams = np.where(np.arange(len(picks)) % 2 == 0, grid[np.arange(len(picks)) % len(grid)],
                    rng.uniform(0.0, 1.0, len(picks))).astype(np.float32)

    def generate():
        for index, lam in zip(picks, lams):
            yield {"image": np.asarray(images[index : index + 1], np.float32), "lam": np.array([lam], np.float32)}

    return generate


def int8_network(served, film):
    """The network the int8 and dynamic-int8 files are converted from, and what changes for it
    (None: nothing).

    Those files keep the λ path float32 (the full-int8 file by `INT8_FLOAT_OPS`), which would keep
    the λ tables float32 too, and dynamic-range quantization would give each table a single int8
    scale, far too coarse for the batch norms' (scale, shift). int8 codes with a scale and offset per
    column hold a table in a quarter of the bytes, adding at most their rounding to the FiLM table's
    error in γ, β (`oat_tf.folding.store_tables_int8`)."""
    if served.film_table is None:
        return served, None
    stored, rounding = store_tables_int8(served)
    return stored, dict(formats=list(INT8_TABLE_FORMATS), tables="int8 codes with a float32 scale and offset per column",
                        max_abs_error=[e + rounding["film_table"] for e in film["max_abs_error"]],
                        route_table_max_abs_error=rounding["route_table"])


def _check_output_dir(out_dir, overwrite):
    parent = os.path.dirname(os.path.abspath(out_dir))
    if os.path.exists(out_dir) and not overwrite:
        raise ValueError(f"{out_dir!r} exists; pass overwrite=True (--overwrite) to replace it.")
    try:
        os.makedirs(parent, exist_ok=True)
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as error:
        raise ValueError(f"cannot write the bundle next to {out_dir!r}: {error}.") from None
    return parent


def _publish(staging, out_dir):
    """Moves the finished staging directory to `out_dir` (replacing an old bundle only now)."""
    if os.path.exists(out_dir):
        retired = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out_dir)), prefix=".retired-")
        os.replace(out_dir, os.path.join(retired, "bundle"))
        os.replace(staging, out_dir)
        shutil.rmtree(retired)
    else:
        os.replace(staging, out_dir)


def export_bundle(model, out_dir, class_names, representative, widths=None, formats=FORMATS, evaluation=None,
                  overwrite=False, provenance_fields=None, film_table_points=FILM_TABLE_POINTS):
    """Writes the bundle described in this module's docstring and returns its manifest.

    `representative`: see `representative_dataset` (needed for "int8"). `evaluation`: a callable
    (model, bundle root, files) → rows of {width, lambda, format, sa, ra, agreement, ...}
    (see `bundle_evaluation`), or None. `film_table_points`: the most knots a λ table may have (see
    `compact_network`; 0: keep the MLP).
    Everything is written to a hidden staging directory next to `out_dir` and renamed at the end,
    so an interrupted export leaves no bundle that looks complete.
    """
    from oat_tf.layers.slimming import width_index

    widths = list(model.widths) if widths is None else [model.widths[width_index(model.widths, w)] for w in widths]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown formats {unknown}; choose from {list(FORMATS)}.")
    if len(class_names) != model.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {model.num_classes} outputs.")
    parent = _check_output_dir(out_dir, overwrite)
    staging = tempfile.mkdtemp(dir=parent, prefix=".export-")
    try:
        files = []
        for width in widths:
            # Every file holds one width, so a λ table network folds that width's batch norms into its convolutions.
            served, film = compact_network(model, film_table_points, width=width)
            int8_served, int8_film = int8_network(served, film)
            directory = os.path.join(staging, width_tag(width))
            saved_model = os.path.join(directory, "saved_model")
            write_saved_model(served, saved_model, [width])
            files.append(dict(width=width, format="saved_model", path=os.path.relpath(saved_model, staging)))
            int8_saved_model = saved_model
            if int8_served is not served and set(formats) & set(INT8_TABLE_FORMATS):
                int8_saved_model = os.path.join(staging, ".int8_saved_model")  # once per width, for both formats
                write_saved_model(int8_served, int8_saved_model, [width])
            for fmt in formats:
                path = os.path.join(directory, f"model_{fmt}.tflite")
                source = int8_saved_model if fmt in INT8_TABLE_FORMATS else saved_model
                with open(path, "wb") as f:
                    f.write(convert(source, fmt, representative=representative))
                files.append(dict(width=width, format=fmt, path=os.path.relpath(path, staging)))
            if int8_saved_model != saved_model:
                shutil.rmtree(int8_saved_model)
        film = film if int8_film is None else dict(film, int8_files=int8_film)
        # The combined file is float32 and measured against the full width's float32 file.
        combined = _combined_file(served, staging, widths) if len(widths) > 1 and "float32" in formats else None
        for entry in files:
            entry.update(_file_facts(os.path.join(staging, entry["path"])))
        rows = evaluation(model, staging, files) if evaluation is not None else []
        manifest = dict(
            widths=widths,
            lam=dict(range=[0.0, 1.0], training_grid=list(model.lam_grid), conditioned=model.conditioned,
                     encoding=model.encoding_kind if model.film else None,
                     out_of_range="clamped to [0, 1]; NaN counts as 0",
                     routes="λ = 0: clean batch norm; λ > 0: adversarial batch norm (computed in float32 in every format)"),
            film=film,
            input=dict(image=dict(shape=[None, model.image_size, model.image_size, 3], dtype="float32",
                                  range=[0.0, 1.0], layout="NHWC RGB"),
                       lam=dict(shape=[None], dtype="float32")),
            outputs=["logits", "probabilities"],
            signature="serving_default",
            class_names=list(class_names),
            files=files,
            combined_file=combined,
            evaluation=dict(method=getattr(evaluation, "description", "not evaluated"), rows=rows),
            **(provenance_fields or {}),
        )
        with open(os.path.join(staging, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        _publish(staging, out_dir)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return manifest


def _file_facts(path):
    if os.path.isdir(path):
        sizes = [os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names]
        return dict(size_bytes=sum(sizes))
    return dict(size_bytes=os.path.getsize(path), sha256=file_sha256(path))


def _combined_file(model, staging, widths):
    """One float32 TFLite file with a signature per width, kept only if it is small enough."""
    saved_model = os.path.join(staging, ".combined_saved_model")
    write_saved_model(model, saved_model, widths)
    content = convert(saved_model, "float32", signature_keys=[width_tag(w) for w in widths])
    shutil.rmtree(saved_model)
    full = os.path.getsize(os.path.join(staging, width_tag(max(widths)), "model_float32.tflite"))
    kept = len(content) <= COMBINED_SIZE_LIMIT * full
    facts = dict(size_bytes=len(content), full_width_float32_bytes=full, ratio=round(len(content) / full, 3),
                 kept=kept, signatures=[width_tag(w) for w in widths])
    if kept:
        path = os.path.join(staging, COMBINED_FILE)
        with open(path, "wb") as f:
            f.write(content)
        facts.update(path=COMBINED_FILE, sha256=file_sha256(path))
    return facts


def _predictor(root, entry):
    """A function (images, λ) → logits for one bundle file."""
    path = os.path.join(root, entry["path"])
    if entry["format"] == "saved_model":
        serve = tf.saved_model.load(path).signatures["serving_default"]
        return lambda images, lam: np.concatenate([
            serve(image=tf.constant(images[i : i + 250]), lam=tf.constant(lam[i : i + 250]))["logits"].numpy()
            for i in range(0, len(images), 250)
        ])
    return TFLiteModel(path)


def bundle_evaluation(images, labels, lambdas, attack="pgd20", epsilon=None, num_robust=None, batch_size=250, seed=0):
    """An `evaluation` callable for `export_bundle`: SA of every file on `images` and RA on the first
    `num_robust` of them, per (width, λ). The adversarial examples are crafted once per (width, λ)
    with `attack` on the float Keras model and then applied to every file (transfer to quantized files)."""
    from oat_tf.attacks import DEFAULT_EPSILON, build_attack

    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int64)
    n_robust = len(labels) if num_robust is None else min(int(num_robust), len(labels))
    epsilon = DEFAULT_EPSILON if epsilon is None else float(epsilon)
    crafter = build_attack(attack, epsilon)

    def craft(model, lam, width):
        adversarial = []
        for start in range(0, n_robust, batch_size):
            end = min(start + batch_size, n_robust)
            seeds = np.stack([np.full(end - start, seed), np.arange(start, end)], 1).astype(np.int32)
            adversarial.append(np.asarray(crafter(model, images[start:end], labels[start:end],
                                                  np.full(end - start, lam, np.float32), width=width, seeds=seeds)))
        return np.concatenate(adversarial)

    def run(model, root, files):
        rows = []
        for width in sorted({entry["width"] for entry in files}):
            predictors = [(entry, _predictor(root, entry)) for entry in files if entry["width"] == width]
            for lam in lambdas:
                x_adv = craft(model, lam, width)
                lam_clean = np.full(len(labels), lam, np.float32)
                reference = np.concatenate([
                    np.argmax(model({"image": images[i : i + batch_size], "lam": lam_clean[i : i + batch_size]},
                                    width=width, training=False), 1)
                    for i in range(0, len(labels), batch_size)
                ])
                for entry, predict in predictors:
                    predicted = np.argmax(predict(images, lam_clean), 1)
                    sa = np.mean(predicted == labels)
                    ra = np.mean(np.argmax(predict(x_adv, lam_clean[:n_robust]), 1) == labels[:n_robust])
                    rows.append(dict(width=width, **{"lambda": float(lam)}, format=entry["format"],
                                     path=entry["path"], sa=float(sa), ra=float(ra),
                                     agreement=float(np.mean(predicted == reference)), n_clean=len(labels),
                                     n_robust=n_robust))
        return rows

    run.description = (f"SA on {len(labels)} images (agreement: share of them with the float Keras model's top-1); RA on the first {n_robust} under {attack} "
                       f"(ε = {epsilon * 255:g}/255) crafted on the float Keras model at the same width and λ "
                       "and applied to each file (for quantized files this is a transfer attack)")
    return run
