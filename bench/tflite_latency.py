"""LiteRT latency of an exported bundle per width and format at batch 1, with 1 and 2 threads, as JSON,
next to each file's size and the manifest's SA, RA and top-1 agreement per λ (accuracy, size and
latency side by side).

    python bench/tflite_latency.py --bundle bundles/oats-cifar10-cpu --out results/bench/tflite_latency.json
"""

import json
import os

import numpy as np
from absl import app, flags

from oat_tf.export import TFLiteModel
from oat_tf.provenance import provenance, write_json

FLAGS = flags.FLAGS
flags.DEFINE_string("bundle", None, "Bundle directory (with manifest.json).", required=True)
flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts.")
flags.DEFINE_integer("runs", 200, "Timed invocations per file (after 20 warm-up runs).", lower_bound=1)
flags.DEFINE_string("out", None, "Also write the JSON here (atomically).")


def main(argv):
    del argv
    with open(os.path.join(FLAGS.bundle, "manifest.json")) as f:
        manifest = json.load(f)
    size = manifest["input"]["image"]["shape"][1]
    image = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
    lam = np.array([0.2], np.float32)
    evaluation = manifest.get("evaluation", {})
    rows = []
    for entry in manifest["files"]:
        if entry["format"] == "saved_model":
            continue
        accuracy = {str(r["lambda"]): {k: r[k] for k in ("sa", "ra", "agreement")}
                    for r in evaluation.get("rows", []) if r["path"] == entry["path"]}
        for threads in (int(t) for t in FLAGS.threads):
            model = TFLiteModel(os.path.join(FLAGS.bundle, entry["path"]), num_threads=threads)
            rows.append(dict(width=entry["width"], format=entry["format"], threads=threads,
                             size_bytes=entry["size_bytes"], **model.latency_ms(image, lam, FLAGS.runs),
                             accuracy=accuracy))
    result = provenance(benchmark="tflite_latency_batch1", bundle=FLAGS.bundle, source_run=manifest.get("source_run"),
                        model=manifest.get("model"), variant=manifest.get("variant"), film=manifest.get("film"),
                        accuracy_method=evaluation.get("method"), runs=FLAGS.runs, results=rows)
    print(json.dumps(result, indent=2))
    if FLAGS.out:
        write_json(FLAGS.out, result)


if __name__ == "__main__":
    app.run(main)
