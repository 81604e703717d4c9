"""Reproduce the paper's claims (Figs. 2, 4–7, Jacobian saliency, cost) and write the report.

    python experiments/reproduce.py --budget=cpu --data_dir=../shared/data/cifar10-jpeg.tar.gz

trains every model the budget needs in `--runs_dir`, evaluates them on the test split and
writes to `--out` one JSON with every number, one PNG per figure and README.md (each claim,
what was measured, whether it holds). Rerunning the command skips finished trainings and
evaluations and resumes an interrupted training from its last epoch. Budgets: `smoke`
(a pipeline check in minutes), `cpu` (about 4–5 hours on 2 cores), `paper` (GPUs).
"""

import os
import subprocess
import sys
import time

from absl import app, flags

from oat_tf.data import DATASETS
from oat_tf.reproduce.plan import BUDGETS

FLAGS = flags.FLAGS
flags.DEFINE_enum("budget", "cpu", sorted(BUDGETS), "Model size, data and evaluation budget.")
flags.DEFINE_enum("dataset", "cifar10", sorted(DATASETS), "Dataset.")
flags.DEFINE_string("data_dir", None, "Image-folder tree or .tar.gz of one; default: tensorflow-datasets.")
flags.DEFINE_string("runs_dir", None, "Where the trained runs go (default runs/reproduce-<budget>).")
flags.DEFINE_string("out", None, "Report directory (default results/ for cpu, results/reproduce-<budget>/ otherwise).")
flags.DEFINE_bool("report_only", False, "Only rewrite the report from what has finished.")


def directories():
    runs_dir = FLAGS.runs_dir or os.path.join("runs", f"reproduce-{FLAGS.budget}")
    out = FLAGS.out or ("results" if FLAGS.budget == "cpu" else os.path.join("results", f"reproduce-{FLAGS.budget}"))
    return runs_dir, out


REPORT_INTERVAL_S = 600
_last_report = [time.monotonic()]


def run_command():
    """The command line of the whole suite (what the report says it was made by)."""
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--report_only")]
    return " ".join(["python", "experiments/reproduce.py"] + args)


def write_report():
    """Rewrites the report, at most every REPORT_INTERVAL_S, in a child process: it always uses the
    current report code, and a failing figure cannot stop the training."""
    if time.monotonic() - _last_report[0] < REPORT_INTERVAL_S:
        return
    _last_report[0] = time.monotonic()
    command = [sys.executable, os.path.abspath(__file__), "--report_only"] + [
        arg for arg in sys.argv[1:] if not arg.startswith("--report_only")]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode:
        print(f"[reproduce] report failed:\n{finished.stderr[-3000:]}", flush=True)


def main(argv):
    del argv
    from oat_tf.reproduce import report
    from oat_tf.reproduce.plan import build_plan

    budget = BUDGETS[FLAGS.budget]
    plan = build_plan(budget)
    runs_dir, out = directories()
    try:
        if not FLAGS.report_only:
            from oat_tf.reproduce.runner import run_plan
            from oat_tf.trainer import default_strategy

            run_plan(plan, budget, runs_dir, FLAGS.dataset, FLAGS.data_dir, default_strategy(), write_report)
        report.write(plan, budget, runs_dir, FLAGS.dataset, FLAGS.data_dir, out, run_command())
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(f"[reproduce] report in {out}/README.md")


if __name__ == "__main__":
    app.run(main)
