"""Full-int8 routes compared on a trained run, as JSON: size, agreement, λ routing, LiteRT latency.

    python bench/int8_routes.py --checkpoint runs/reproduce-cpu-cpu/oats \
        --data_dir ../shared/data/cifar10-jpeg.tar.gz --out results/bench/int8_routes.json

Routes, each from the same float32 file of one width (the exporter's compact network):
- `converter`: the TFLite converter's full int8 with the λ path and the per-sample affines kept
  float32 by an op deny-list (the bundle's `int8` format, from the same network with its λ tables,
  if it has them, in int8 codes);
- `aeq_conv`: ai-edge-quantizer, convolutions static int8 (int8 weights and activations), every
  other op float32;
- `aeq_conv_fc_weights`: the same, and every FULLY_CONNECTED (FiLM, classifier) with int8
  weights dequantized once at load, computing in float32.
Agreement is the top-1 agreement with the float32 file per λ on real images in a seeded random
order (the folder copy lists them class by class; until 2026-12-01 this took the first ones, all
airplanes): the run's validation split (`--split=val`, for choosing between files) or the test split
(for reports). `disagreeing_images` lists the indices that disagree, for paired comparisons
(`bench/paired_agreement.py`), and `disagreement_margins` how near a tie the float decision was on
them; `accuracy` is each file's top-1 accuracy on the same images' labels. Routing checks that λ = 0.001 and 0.01 give outputs nearer the float file's at that λ than at
λ = 0 (switch routing only: with blended routing λ = 0.001 is 0.1 % of the way from BN_c
to BN_a, less than any int8 file's error, so the comparison would be a coin toss; the JSON's
`norm_routing` says which).
"""

import json
import os
import tempfile

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Training run directory.", required=True)
flags.DEFINE_string("data_dir", None, "Image-folder tree or .tar.gz; default: the run's.")
flags.DEFINE_float("width", 1.0, "Width to quantize.")
flags.DEFINE_enum("split", "test", ["val", "test"],
                  "Images for agreement: the run's validation split (model selection) or the test split (reports).")
flags.DEFINE_integer("examples", 1000, "Images for agreement (a seeded random sample of the split).", lower_bound=1)
flags.DEFINE_list("lambdas", ["0", "0.2", "1"], "λ values for agreement.")
flags.DEFINE_integer("representative_examples", 200, "Training images that calibrate int8.", lower_bound=1)
flags.DEFINE_enum("activation_ranges", "minmax", ["minmax", "mse"],
                  "The converter route's int8 activation ranges: the calibration's extremes or least error "
                  "(`oat_tf.activation_ranges`).")
flags.DEFINE_list("routes", ["converter", "aeq_conv", "aeq_conv_fc_weights"], "Full-int8 routes to compare.")
flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts for latency.")
flags.DEFINE_integer("runs", 200, "Timed invocations per file and thread count.", lower_bound=1)
flags.DEFINE_string("out", None, "Also write the JSON here (atomically).")

_INT8_ACTIVATIONS = dict(num_bits=8, symmetric=False, granularity="TENSORWISE", dtype="INT")
_INT8_WEIGHTS = dict(num_bits=8, symmetric=True, granularity="CHANNELWISE", dtype="INT")
_CONV_INT8 = {"regex": ".*", "operation": "CONV_2D", "algorithm_key": "min_max_uniform_quantize",
              "op_config": {"activation_tensor_config": _INT8_ACTIVATIONS, "weight_tensor_config": _INT8_WEIGHTS,
                            "compute_precision": "INTEGER", "explicit_dequantize": False}}
_FC_WEIGHT_ONLY = {"regex": ".*", "operation": "FULLY_CONNECTED", "algorithm_key": "min_max_uniform_quantize",
                   "op_config": {"weight_tensor_config": _INT8_WEIGHTS, "compute_precision": "FLOAT",
                                 "explicit_dequantize": True}}
RECIPES = {"aeq_conv": [_CONV_INT8], "aeq_conv_fc_weights": [_CONV_INT8, _FC_WEIGHT_ONLY]}


def quantize_with_recipe(float_path, recipe, calibration):
    """ai-edge-quantizer: the flatbuffer bytes of `float_path` quantized by `recipe` (ordered per-op rules)."""
    from ai_edge_quantizer import quantizer

    engine = quantizer.Quantizer(float_path, recipe)
    result = engine.calibrate({"serving_default": calibration}, num_threads=1) if engine.need_calibration else None
    return bytes(engine.quantize(result, enable_progress_report=False).quantized_model)


def near_tie_summary(float_logits, agrees):
    """How close to a tie the float file's decision was on the images a quantized file disagrees on:
    the median top-2 logit margin of all images and of those, and the share of those among the 10 %
    of images with the smallest margins (1.0: every disagreement is a near-tie flip)."""
    top2 = np.sort(float_logits, 1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    disagreeing = margin[~agrees]
    return dict(median_margin=round(float(np.median(margin)), 4),
                median_margin_disagreeing=round(float(np.median(disagreeing)), 4) if len(disagreeing) else None,
                disagreeing_in_smallest_10pct_margins=(round(float(np.mean(disagreeing < np.quantile(margin, 0.1))), 4)
                                                       if len(disagreeing) else None))


def main(argv):
    del argv
    from oat_tf.config import flag_numbers
    from oat_tf.data import load_split
    from oat_tf.evaluate import load_evaluation_data
    from oat_tf.export import TFLiteModel, convert, int8_network, representative_dataset, write_saved_model
    from oat_tf.folding import compact_network
    from oat_tf.provenance import provenance, write_json
    from oat_tf.trainer import load_run

    lambdas = flag_numbers("lambdas", FLAGS.lambdas)
    unknown = sorted(set(FLAGS.routes) - {"converter", *RECIPES})
    if unknown or not FLAGS.routes:
        raise app.UsageError(f"unknown routes {unknown}; choose from converter, {', '.join(RECIPES)}.")
    model, config, _ = load_run(FLAGS.checkpoint)
    data_dir = FLAGS.data_dir or config.data_dir or None
    train_images, _, _ = load_split(config.dataset, "train", data_dir, validation_size=config.validation_size,
                                    seed=config.seed)
    if FLAGS.split == "val":  # already in the run's seeded random order
        images, labels, _ = load_split(config.dataset, "val", data_dir, validation_size=config.validation_size,
                                       seed=config.seed)
        images, labels = images[: FLAGS.examples] / np.float32(255), labels[: FLAGS.examples]
    else:
        images, labels = load_evaluation_data(config.dataset, "test", data_dir, seed=0, num_clean=FLAGS.examples)
    representative = representative_dataset(train_images / np.float32(255), model.lam_grid,
                                            FLAGS.representative_examples)
    served, film = compact_network(model, width=FLAGS.width)
    workdir = tempfile.mkdtemp(prefix="int8-routes-")
    saved_model = os.path.join(workdir, "saved_model")
    write_saved_model(served, saved_model, [FLAGS.width])
    int8_served, int8_film = int8_network(served, film)
    int8_saved_model = saved_model
    if int8_served is not served:
        int8_saved_model = os.path.join(workdir, "int8_saved_model")
        write_saved_model(int8_served, int8_saved_model, [FLAGS.width])
    files = {"float32": convert(saved_model, "float32")}
    if "converter" in FLAGS.routes:
        files["converter"] = convert(int8_saved_model, "int8", representative=representative,
                                     activation_ranges=FLAGS.activation_ranges)
    float_path = os.path.join(workdir, "float32.tflite")
    with open(float_path, "wb") as f:
        f.write(files["float32"])
    calibration = list(representative())
    for name in (r for r in FLAGS.routes if r in RECIPES):
        files[name] = quantize_with_recipe(float_path, RECIPES[name], calibration)

    reference = TFLiteModel(files["float32"])
    float_logits = {lam: reference(images, lam) for lam in (*lambdas, 0.0, 0.001, 0.01)}
    image, lam_one = images[:1], np.array([0.2], np.float32)
    rows = []
    for name, content in files.items():
        quantized = TFLiteModel(content)
        predictions = {str(lam): np.argmax(quantized(images, lam), 1) for lam in lambdas}
        agrees = {lam: p == np.argmax(float_logits[float(lam)], 1) for lam, p in predictions.items()}
        agreement = {lam: round(float(np.mean(a)), 4) for lam, a in agrees.items()}
        accuracy = {lam: round(float(np.mean(p == labels)), 4) for lam, p in predictions.items()}
        routed = {}
        for lam in (0.001, 0.01) if config.norm_routing == "switch" else ():
            out = quantized(images[:64], lam)
            routed[str(lam)] = bool(np.abs(out - float_logits[lam][:64]).mean() < np.abs(out - float_logits[0.0][:64]).mean())
        latency = {}
        for threads in (int(t) for t in FLAGS.threads):
            timed = TFLiteModel(content, num_threads=threads)
            latency[f"{threads}_threads"] = timed.latency_ms(image, lam_one, FLAGS.runs)
        rows.append(dict(route=name, size_bytes=len(content), size_ratio=round(len(content) / len(files["float32"]), 3),
                         agreement=agreement, accuracy=accuracy,
                         disagreeing_images={lam: np.flatnonzero(~a).tolist() for lam, a in agrees.items()},
                         disagreement_margins={lam: near_tie_summary(float_logits[float(lam)], a) for lam, a in agrees.items()},
                         routes_small_lambdas_adversarial=routed, latency=latency))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "disagreeing_images"}))
    result = provenance(benchmark="int8_routes", source_run=FLAGS.checkpoint, model=config.model,
                        width_multiplier=config.width_multiplier, variant=config.variant, width=FLAGS.width,
                        norm_routing=config.norm_routing,
                        film=film if int8_film is None else dict(film, int8_files=int8_film), examples=FLAGS.examples,
                        split=FLAGS.split, activation_ranges=FLAGS.activation_ranges,
                        data=(f"{config.dataset} test split, {FLAGS.examples} in a seeded random order (seed 0)"
                              if FLAGS.split == "test"
                              else f"{config.dataset} validation split of the run, its first {FLAGS.examples}"),
                        runs=FLAGS.runs, results=rows)
    if FLAGS.out:
        write_json(FLAGS.out, result)


if __name__ == "__main__":
    app.run(main)
