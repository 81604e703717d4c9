"""Records a quickstart run in results/quickstart/: its summary.json and a README with its trade-off.

    python experiments/record_quickstart.py --run_dir=runs/oats-cifar10-cpu --name=oats-cifar10-cpu

copies the run's summary.json to `--out`/<name>_summary.json and rewrites `--out`/README.md from
every *_summary.json there: how each run was made, its final validation table and, per width,
whether λ separates the two ends (SA(λ = 0) ≥ SA(λ = 1) + 8 pp and RA(λ = 1) ≥ RA(λ = 0) + 8 pp,
the criterion fixed in issue 13 before the run).
"""

import glob
import json
import os
import shutil
import sys

from absl import app, flags

from oat_tf.provenance import write_atomic
from oat_tf.tradeoff_table import end_separation, tradeoff_table

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "The finished quickstart run (holds summary.json).")
flags.DEFINE_string("name", None, "Name of the record (default: the run directory's name).")
flags.DEFINE_string("out", "results/quickstart", "Where the records are.")

MARGIN_PP = 8.0


def section(name, summary):
    """Markdown lines of one recorded run."""
    config, rows = summary["config"], summary["validation"]
    hardware = summary["hardware"]
    minutes = summary.get("invocation_seconds", sum(summary["epoch_seconds"])) / 60
    timed = "the whole run" if "invocation_seconds" in summary else "the training epochs only (validation not timed)"
    lines = [f"## `{name}`", "",
             f"`{summary['command']}` at {summary['time_utc']} (commit `{summary['commit']}`), {hardware['cpu']} with "
             f"{hardware['cores']} cores{', no GPU' if not hardware['gpus'] else ''}; {summary['data']}. "
             f"{config['method'].upper()}, {config['model']} ×{config['width_multiplier']:g}, {config['epochs']} epochs "
             f"on {config['train_examples']} images, training attack {config['train_attack']}, λ trained on "
             f"{config['lam_set']}, FiLM `{config.get('film_form', 'reference')}`, the widths' losses "
             f"{'summed' if config.get('width_loss') == 'sum' else 'averaged'}. Wall clock: {minutes:.1f} min "
             f"({timed}). Validation: SA on {rows[0]['n_clean']} images, RA under {rows[0]['attack']} on "
             f"{rows[0]['n_robust']}.", "", tradeoff_table(rows), "",
             f"λ separates the ends (SA(0) − SA(1) and RA(1) − RA(0) ≥ {MARGIN_PP:g} pp; ± one standard error):", ""]
    for width in end_separation(rows, MARGIN_PP):
        lines.append(f"- width {width['width']:g}: SA {width['sa_gap_pp']:+.1f} ± {width['sa_gap_se_pp']:.1f} pp, "
                     f"RA {width['ra_gap_pp']:+.1f} ± {width['ra_gap_se_pp']:.1f} pp — "
                     f"**{'holds' if width['holds'] else 'does not hold'}**")
    return lines + [""]


def readme(records):
    """README.md text for {name: summary}, the newest first."""
    lines = ["# Quickstart runs", "",
             "Each run of `python train/oats.py --dataset=cifar10 --preset=cpu …` recorded here by "
             "`experiments/record_quickstart.py`, the newest first; every number is in its `<name>_summary.json`.", ""]
    for name, summary in sorted(records.items(), key=lambda item: item[1]["time_utc"], reverse=True):
        lines += section(name, summary)
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.run_dir:
        source = os.path.join(FLAGS.run_dir, "summary.json")
        if not os.path.isfile(source):
            sys.exit(f"error: {source} does not exist; is {FLAGS.run_dir!r} a finished training run?")
        name = FLAGS.name or os.path.basename(os.path.normpath(FLAGS.run_dir))
        os.makedirs(FLAGS.out, exist_ok=True)
        write_atomic(os.path.join(FLAGS.out, f"{name}_summary.json"), lambda temporary: shutil.copyfile(source, temporary))
    records = {}
    for path in sorted(glob.glob(os.path.join(FLAGS.out, "*_summary.json"))):
        with open(path) as f:
            records[os.path.basename(path)[: -len("_summary.json")]] = json.load(f)
    if not records:
        sys.exit(f"error: no *_summary.json in {FLAGS.out!r}; pass --run_dir.")
    text = readme(records)
    write_atomic(os.path.join(FLAGS.out, "README.md"), lambda temporary: open(temporary, "w").write(text))
    print(text)


if __name__ == "__main__":
    app.run(main)
