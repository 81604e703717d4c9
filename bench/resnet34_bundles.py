"""Bundles at the paper's scale, OATS against the plain slimmable network of the same architecture:
file size and batch-1 LiteRT latency per width and format, as JSON.

    python bench/resnet34_bundles.py --out results/bench/resnet34_bundles.json

Both networks are exported by `oat_tf.export.export_bundle` (OATS with its compact FiLM, see the
manifest's `film`) from seeded random weights: size and latency do not depend on training. Every
file is timed by this package's interpreter loop (`TFLiteModel.latency_ms`) and by LiteRT's own
`litert-benchmark`, at each thread count, one file after the other; run it on a quiet machine.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

from oat_tf import ARCHITECTURES
from oat_tf.export import FORMATS

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "resnet34", sorted(ARCHITECTURES), "Zoo network.")
flags.DEFINE_enum("film_form", "reference", ["reference", "identity"], "OATS's FiLM form.")
flags.DEFINE_list("formats", list(FORMATS), "TFLite formats.")
flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts.")
flags.DEFINE_integer("runs", 100, "Timed invocations per file, tool and thread count (after 20 warm-up runs).",
                     lower_bound=1)
flags.DEFINE_bool("latency", True, "Time the files (sizes only when false).")
flags.DEFINE_string("workdir", None, "Where the bundles are written (default: a new temporary directory).")
flags.DEFINE_string("out", None, "Also write the JSON here (atomically).")


def litert_benchmark(path, threads, runs):
    """Median and p95 latency (ms) from LiteRT's `litert-benchmark` tool."""
    tool = os.path.join(os.path.dirname(sys.executable), "litert-benchmark")
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        subprocess.run([tool, f"--model={path}", f"--num_threads={threads}", f"--num_runs={runs}", "--warmup_runs=20",
                        f"--result_json={report.name}"], check=True, capture_output=True)
        latency = json.load(open(report.name))["latency"]
    return dict(median_ms=latency["median_ms"], p95_ms=latency["p95_ms"])


def main(argv):
    del argv
    import keras

    from oat_tf import build_model
    from oat_tf.export import TFLiteModel, export_bundle
    from oat_tf.provenance import provenance, write_json

    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="bundles-")
    rng = np.random.default_rng(0)
    calibration_images = rng.random((100, 32, 32, 3), dtype=np.float32)

    def representative():
        for i, image in enumerate(calibration_images):
            yield {"image": image[None], "lam": np.array([i % 11 / 10], np.float32)}

    image, lam = calibration_images[:1], np.array([0.2], np.float32)
    rows, film = [], None
    for variant in ("slimmable", "oats"):
        keras.utils.set_random_seed(0)
        model = build_model(FLAGS.model, variant, film_form=FLAGS.film_form)
        manifest = export_bundle(model, os.path.join(workdir, variant), [str(i) for i in range(10)], representative,
                                 formats=FLAGS.formats, overwrite=True)
        film = manifest["film"] or film
        for entry in manifest["files"]:
            if entry["format"] == "saved_model":
                continue
            row = dict(variant=variant, width=entry["width"], format=entry["format"], size_bytes=entry["size_bytes"])
            path = os.path.join(workdir, variant, entry["path"])
            for threads in (int(t) for t in FLAGS.threads) if FLAGS.latency else ():
                row[f"interpreter_{threads}_threads"] = TFLiteModel(path, num_threads=threads).latency_ms(
                    image, lam, FLAGS.runs)
                row[f"litert_benchmark_{threads}_threads"] = litert_benchmark(path, threads, FLAGS.runs)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = provenance(benchmark="bundles_at_scale", model=FLAGS.model, film_form=FLAGS.film_form, weights="random",
                        batch=1, runs=FLAGS.runs, film=film, results=rows)
    if FLAGS.out:
        write_json(FLAGS.out, result)


if __name__ == "__main__":
    app.run(main)
