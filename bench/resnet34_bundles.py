"""Bundles at the paper's scale, OATS against the plain slimmable network of the same architecture:
file size and batch-1 LiteRT latency per width and format, as JSON.

    python bench/resnet34_bundles.py --out results/bench/resnet34_bundles.json

Both networks are exported by `oat_tf.export.export_bundle` (OATS with its compact FiLM, see the
manifest's `film`) from seeded random weights: size and latency do not depend on training. Every
file is timed by this package's interpreter loop (`TFLiteModel.latency_ms`) and by LiteRT's own
`litert-benchmark`, at each thread count, the plain and the OATS file of a width and format in
turn for `--rounds` rounds (the median of the rounds' medians is reported, and each round's);
run it on a quiet machine. `--interleaved_rounds=R` also times every file of a width round-robin in one
process, R rounds each giving every file a turn in a shuffled order (`--interleaved_block`: how many
timed invocations a turn has), and reports OATS / plain as a ratio of medians with a bootstrap
interval: drift of the machine's speed then falls on both files of a pair
(`results/bench/latency_interleaved_plan.md`). `--reuse_bundles` times the bundles an earlier run left
in `--workdir`, so that the export can run beside other work. `--instructions` also counts each file's
steady-state instructions per inference (the first call left out) under valgrind's callgrind, a number
that does not move with the machine's load (`--latency=false --instructions` can run beside other
work). The last lines printed are the README's tables (`--table_from=<json>` prints them again).
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

from oat_tf import ARCHITECTURES
from oat_tf.export import FORMATS

FLAGS = flags.FLAGS
TIMERS = ("litert_benchmark", "interleaved")  # with a table each (the interpreter loop's numbers are in the JSON)
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
flags.DEFINE_integer("interleaved_rounds", 0, "Also time every file of a width round-robin in one process: this many "
                     "rounds, each invoking every file once in a shuffled order (0: off).", lower_bound=0)
flags.DEFINE_integer("interleaved_block", 1, "With --interleaved_rounds: a file's turn in a round is one untimed and "
                     "then this many timed invocations in a row, their median its time, as for a model invoked "
                     "again and again; 1: one timed invocation.", lower_bound=1)
flags.DEFINE_bool("instructions", False, "Also count each file's instructions per inference under valgrind's callgrind "
                  "(1 thread; a count, so it does not depend on the machine's load).")
flags.DEFINE_string("workdir", None, "Where the bundles are written (default: a new temporary directory).")
flags.DEFINE_bool("reuse_bundles", False, "Time the bundles an earlier run of this script left in --workdir (same "
                  "--model, --film_form and --formats) instead of exporting them again: export beside other work "
                  "(--latency=false), time on a quiet machine.")
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


# One file's inferences in a process of their own, with nothing but LiteRT imported.
_INVOKE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
runner = Interpreter(model_path=sys.argv[1], num_threads=1).get_signature_runner()
image = np.random.default_rng(0).random((1, *runner.get_input_details()["image"]["shape"][1:]), dtype=np.float32)
for _ in range(int(sys.argv[2])):
    runner(image=image, lam=np.array([0.2], np.float32))
"""
INSTRUCTION_INFERENCES = 4
# Callgrind counts only inside this call, so Python, loading and delegate set-up fall outside the count (which
# repeats to the instruction).
_COUNTED_CALL = "tflite::interpreter_wrapper::InterpreterWrapper::Invoke(int)"


def _instructions(path, inferences):
    """Instructions `inferences` batch-1 inferences of `path` execute inside LiteRT's Invoke (1 thread)."""
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--collect-atstart=no",
                           f"--toggle-collect={_COUNTED_CALL}", sys.executable, "-c", _INVOKE, path,
                           str(inferences)], capture_output=True, text=True, check=True)
    count = int(re.search(r"I\s+refs:\s+([\d,]+)", done.stderr).group(1).replace(",", ""))
    if count == 0:
        raise RuntimeError(f"callgrind counted nothing in {_COUNTED_CALL} for {path}: LiteRT's call was renamed?")
    return count


def instructions_per_inference(path):
    """Instructions one steady-state batch-1 inference of `path` executes inside LiteRT (1 thread), counted by
    callgrind: (1 + INSTRUCTION_INFERENCES inferences − 1 inference) / INSTRUCTION_INFERENCES, so the first
    call's one-time work (a float16 file dequantizes its λ tables then, and caches them) is left out; both
    counts are exact. Returns (steady state, first inference)."""
    first = _instructions(path, 1)
    return round((_instructions(path, 1 + INSTRUCTION_INFERENCES) - first) / INSTRUCTION_INFERENCES), first


def interleaved_latency(paths, threads, rounds, image, lam, block=1, warmup=20, seed=0):
    """Wall time (ms) of each of `paths`, timed round-robin: every round gives each file a turn (batch 1) in an
    order shuffled per round, so that drift of the machine's speed falls on all files alike. A turn is one
    timed invocation (`block` 1), or one untimed and `block` timed ones in a row, whose median counts (as for
    a model invoked again and again; on this machine both gave the same ratios,
    `results/bench/latency_interleaved_plan.md`). Returns (per file, rounds) times."""
    import time

    from oat_tf.export import TFLiteModel

    runners = [TFLiteModel(path, num_threads=threads).runner for path in paths]
    for runner in runners:
        for _ in range(warmup):
            runner(image=image, lam=lam)

    def timed(runner):
        start = time.perf_counter()
        runner(image=image, lam=lam)
        return time.perf_counter() - start

    rng, times = np.random.default_rng(seed), np.zeros((len(paths), rounds))
    for r in range(rounds):
        for i in rng.permutation(len(paths)):
            if block > 1:
                runners[i](image=image, lam=lam)
            times[i, r] = np.median([timed(runners[i]) for _ in range(block)])
    return times * 1e3


def median_ratio(numerator, denominator, resamples=2000, seed=0):
    """median(numerator) / median(denominator) of paired per-round times, with a 95 % bootstrap interval
    (rounds resampled, each pair kept together)."""
    picks = np.random.default_rng(seed).integers(0, len(numerator), (resamples, len(numerator)))
    boot = np.median(numerator[picks], 1) / np.median(denominator[picks], 1)
    return dict(ratio=float(np.median(numerator) / np.median(denominator)),
                interval_95=[float(q) for q in np.percentile(boot, [2.5, 97.5])])


def markdown_table(result, tool="litert_benchmark"):
    """The README's table from a run's JSON: per width and format, plain / OATS (and their ratio) in size,
    `tool`'s median latency at each thread count and, if counted, instructions per inference."""
    rows = {(r["variant"], r["width"], r["format"]): r for r in result["results"]}
    threads = sorted({int(k.split("_")[-2]) for r in result["results"] for k in r if k.startswith(f"{tool}_")})
    counted = all("instructions_per_inference" in r for r in result["results"])
    pair = lambda plain, oats, unit: f"{plain:.{unit}f} / {oats:.{unit}f} ({oats / plain:.2f}×)"  # noqa: E731
    header = ["width", "format", "size MB plain / OATS",
              *(f"{t} thread{'s' if t > 1 else ''} ms plain / OATS" for t in threads),
              *(["M instructions plain / OATS"] if counted else [])]
    intervals = {(r["width"], r["format"], r["threads"]): r["interval_95"]
                 for r in (result.get("interleaved") or {}).get("oats_over_plain", []) if tool == "interleaved"}
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for width, fmt in sorted({(w, f) for _, w, f in rows}, key=lambda k: (k[0], FORMATS.index(k[1]))):
        plain, oats = rows["slimmable", width, fmt], rows["oats", width, fmt]
        cells = [f"{width:g}", fmt, pair(plain["size_bytes"] / 1e6, oats["size_bytes"] / 1e6, 1)]
        for t in threads:
            cells.append(pair(plain[f"{tool}_{t}_threads"]["median_ms"], oats[f"{tool}_{t}_threads"]["median_ms"], 2))
            if (width, fmt, t) in intervals:  # the ratio's 95 % bootstrap interval
                cells[-1] = cells[-1][:-1] + ", {:.2f}–{:.2f})".format(*intervals[width, fmt, t])
        if counted:
            cells.append(pair(plain["instructions_per_inference"] / 1e6, oats["instructions_per_inference"] / 1e6, 1))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reused_manifest(bundle, made_as):
    """The manifest of a bundle this script exported earlier as `made_as`, after checking that it was made so,
    in --formats, and that its files are there at their recorded sizes."""
    path = os.path.join(bundle, "manifest.json")
    if not os.path.exists(path):
        raise app.UsageError(f"--reuse_bundles: no bundle at {bundle!r}; run once without it to export one.")
    manifest = json.load(open(path))
    recorded = {key: manifest.get(key) for key in made_as}
    formats = {entry["format"] for entry in manifest["files"]} - {"saved_model"}
    if recorded != made_as or formats != set(FLAGS.formats):
        raise app.UsageError(f"--reuse_bundles: {bundle!r} holds {recorded} in {sorted(formats)}, not {made_as} in "
                             f"{sorted(FLAGS.formats)}.")
    for entry in manifest["files"]:
        file = os.path.join(bundle, entry["path"])
        intact = os.path.isfile(file) and os.path.getsize(file) == entry["size_bytes"]
        if entry["format"] != "saved_model" and not intact:
            raise app.UsageError(f"--reuse_bundles: {file!r} is missing or not the file the manifest records.")
    return manifest


def tables(result):
    """`markdown_table` for each timer the run used (LiteRT's tool by default, e.g. for sizes alone)."""
    used = [tool for tool in TIMERS if any(key.startswith(f"{tool}_") for row in result["results"] for key in row)]
    return "\n\n".join(markdown_table(result, tool) for tool in used or TIMERS[:1])


def main(argv):
    del argv
    if FLAGS.table_from:
        print(tables(json.load(open(FLAGS.table_from))))
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
        made_as = dict(model=FLAGS.model, variant=variant, film_form=FLAGS.film_form, weights="random, seed 0")
        if FLAGS.reuse_bundles:
            manifest = reused_manifest(os.path.join(workdir, variant), made_as)
        else:
            keras.utils.set_random_seed(0)
            model = build_model(FLAGS.model, variant, film_form=FLAGS.film_form)
            manifest = export_bundle(model, os.path.join(workdir, variant), [str(i) for i in range(10)],
                                     representative, formats=FLAGS.formats, overwrite=True, provenance_fields=made_as)
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
    ratios = []
    for width in sorted({w for _, w, _ in rows}) if FLAGS.interleaved_rounds else ():
        keys = [key for key in rows if key[1] == width]
        for threads in (int(t) for t in FLAGS.threads):
            times = interleaved_latency([rows[key]["path"] for key in keys], threads, FLAGS.interleaved_rounds,
                                        image, lam, FLAGS.interleaved_block)
            per_file = dict(zip(keys, times))
            for key, t in per_file.items():
                rows[key][f"interleaved_{threads}_threads"] = dict(median_ms=float(np.median(t)),
                                                                    p90_ms=float(np.percentile(t, 90)))
            for fmt in sorted({f for _, _, f in keys}, key=FORMATS.index):
                ratios.append(dict(width=width, format=fmt, threads=threads,
                                   **median_ratio(per_file["oats", width, fmt], per_file["slimmable", width, fmt])))
                print(json.dumps(ratios[-1]), flush=True)
    for row in rows.values() if FLAGS.instructions else ():
        row["instructions_per_inference"], row["instructions_first_inference"] = \
            instructions_per_inference(row["path"])
    rows = [{k: v for k, v in row.items() if k != "path"} for row in rows.values()]
    result = provenance(benchmark="bundles_at_scale", bundles_reused=FLAGS.reuse_bundles, model=FLAGS.model,
                        film_form=FLAGS.film_form, weights="random", batch=1, runs=FLAGS.runs, rounds=FLAGS.rounds,
                        film=film,
                        instructions=(dict(tool="valgrind --tool=callgrind", counted_call=_COUNTED_CALL, threads=1,
                                           per_inference=f"(count over 1 + {INSTRUCTION_INFERENCES} inferences − "
                                                         f"count over 1) / {INSTRUCTION_INFERENCES}")
                                      if FLAGS.instructions else None),
                        interleaved=(dict(rounds=FLAGS.interleaved_rounds, block=FLAGS.interleaved_block, warmup=20,
                                          order="shuffled per round",
                                          oats_over_plain=ratios) if FLAGS.interleaved_rounds else None),
                        results=rows)
    if FLAGS.out:
        write_json(FLAGS.out, result)
    print(tables(result))


if __name__ == "__main__":
    app.run(main)
