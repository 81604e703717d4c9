"""Bundles at the paper's scale, OATS against the plain slimmable network of the same architecture:
file size and batch-1 LiteRT latency per width and format, as JSON.

    python bench/resnet34_bundles.py --out results/bench/resnet34_bundles.json

Both networks are exported by `oat_tf.export.export_bundle` (OATS with its compact FiLM, see the
manifest's `film`) from seeded random weights: size and latency do not depend on training. Every
file is timed by this package's interpreter loop (`TFLiteModel.latency_ms`) and by LiteRT's own
`litert-benchmark`, at each thread count, the plain and the OATS file of a width and format in
turn for `--rounds` rounds (the median of the rounds' medians is reported, and each round's);
run it on a quiet machine.
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
VARIANTS = ("slimmable", "oats")  # the plain network first: the reference of each comparison
flags.DEFINE_enum("model", "resnet34", sorted(ARCHITECTURES), "Zoo network.")
flags.DEFINE_enum("film_form", "reference", ["reference", "identity"], "OATS's FiLM form.")
flags.DEFINE_list("formats", list(FORMATS), "TFLite formats.")
flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts.")
flags.DEFINE_integer("runs", 100, "Timed invocations per file, tool and thread count (after 20 warm-up runs).",
                     lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Rounds of timing, the two networks' files alternating; the median round counts.",
                     lower_bound=1)
flags.DEFINE_bool("latency", True, "Time the files (sizes only when false).")
flags.DEFINE_string("workdir", None, "Where the bundles are written (default: a new temporary directory).")
flags.DEFINE_string("out", None, "Also write the JSON here (atomically).")
flags.DEFINE_string("table_from", None, "Print the Markdown table of an earlier run's JSON and exit (no export, no timing).")


def litert_benchmark(path, threads, runs):
    """Median and p95 latency (ms) from LiteRT's `litert-benchmark` tool."""
    tool = os.path.join(os.path.dirname(sys.executable), "litert-benchmark")
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        subprocess.run([tool, f"--model={path}", f"--num_threads={threads}", f"--num_runs={runs}", "--warmup_runs=20",
                        f"--result_json={report.name}"], check=True, capture_output=True)
        latency = json.load(open(report.name))["latency"]
    return dict(median_ms=latency["median_ms"], p95_ms=latency["p95_ms"])


def markdown_table(result, tool="litert_benchmark"):
    """The README's table from a run's JSON: per width and format, size and `tool`'s median latency at each
    thread count, plain / OATS and their ratio."""
    rows = {(r["variant"], r["width"], r["format"]): r for r in result["results"]}
    threads = sorted({int(k.split("_")[-2]) for r in result["results"] for k in r if k.startswith(f"{tool}_")})
    pair = lambda plain, oats, unit: f"{plain:.{unit}f} / {oats:.{unit}f} ({oats / plain:.2f}×)"  # noqa: E731
    lines = ["| width | format | size MB plain / OATS | "
             + " | ".join(f"{t} thread{'s' if t > 1 else ''} ms plain / OATS" for t in threads) + " |",
             "|---" * (3 + len(threads)) + "|"]
    for width, fmt in sorted({(w, f) for _, w, f in rows}, key=lambda k: (k[0], FORMATS.index(k[1]))):
        plain, oats = rows["slimmable", width, fmt], rows["oats", width, fmt]
        cells = [pair(plain["size_bytes"] / 1e6, oats["size_bytes"] / 1e6, 1)]
        cells += [pair(plain[f"{tool}_{t}_threads"]["median_ms"], oats[f"{tool}_{t}_threads"]["median_ms"], 2)
                  for t in threads if f"{tool}_{t}_threads" in plain]
        lines.append(f"| {width:g} | {fmt} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.table_from:
        print(markdown_table(json.load(open(FLAGS.table_from))))
        return
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
    rows, film = {}, None
    for variant in VARIANTS:
        keras.utils.set_random_seed(0)
        model = build_model(FLAGS.model, variant, film_form=FLAGS.film_form)
        manifest = export_bundle(model, os.path.join(workdir, variant), [str(i) for i in range(10)], representative,
                                 formats=FLAGS.formats, overwrite=True)
        film = manifest["film"] or film
        for entry in manifest["files"]:
            if entry["format"] != "saved_model":
                rows[variant, entry["width"], entry["format"]] = dict(
                    variant=variant, width=entry["width"], format=entry["format"], size_bytes=entry["size_bytes"],
                    path=os.path.join(workdir, variant, entry["path"]))
    # The two networks' files alternate, `rounds` times, so that drift of the machine's speed falls on both.
    for width, fmt in sorted({(w, f) for _, w, f in rows}) if FLAGS.latency else ():
        for threads in (int(t) for t in FLAGS.threads):
            timings = {variant: dict(interpreter=[], tool=[]) for variant in VARIANTS}
            for _ in range(FLAGS.rounds):
                for variant in VARIANTS:
                    path = rows[variant, width, fmt]["path"]
                    timings[variant]["interpreter"].append(
                        TFLiteModel(path, num_threads=threads).latency_ms(image, lam, FLAGS.runs))
                    timings[variant]["tool"].append(litert_benchmark(path, threads, FLAGS.runs))
            for variant in VARIANTS:
                row = rows[variant, width, fmt]
                for name, key, spread in (("interpreter", "interpreter", "p90_ms"), ("litert_benchmark", "tool", "p95_ms")):
                    per_round = timings[variant][key]
                    row[f"{name}_{threads}_threads"] = {
                        "median_ms": float(np.median([t["median_ms"] for t in per_round])),
                        spread: float(np.median([t[spread] for t in per_round])),
                        "round_medians_ms": [t["median_ms"] for t in per_round]}
            print(json.dumps({k: v for k, v in rows["oats", width, fmt].items() if k != "path"}), flush=True)
    rows = [{k: v for k, v in row.items() if k != "path"} for row in rows.values()]
    result = provenance(benchmark="bundles_at_scale", model=FLAGS.model, film_form=FLAGS.film_form, weights="random",
                        batch=1, runs=FLAGS.runs, rounds=FLAGS.rounds, film=film, results=rows)
    if FLAGS.out:
        write_json(FLAGS.out, result)
    print(markdown_table(result))


if __name__ == "__main__":
    app.run(main)
