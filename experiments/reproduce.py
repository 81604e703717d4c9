"""Reproduce the paper's claims (Figs. 2, 4–7, Jacobian saliency, cost) and write the report.

    python experiments/reproduce.py --budget=cpu --data_dir=../shared/data/cifar10-jpeg.tar.gz

trains every model the budget needs in `--runs_dir`, evaluates them on the test split and
writes to `--out` one JSON with every number, one PNG per figure and README.md (each claim,
what was measured, whether it holds). Rerunning the command skips finished trainings and
evaluations and resumes an interrupted training from its last epoch. Budgets: `smoke`
(a pipeline check in minutes), `cpu` (about 4–5 hours on 2 cores), `paper` (GPUs).
`--recipe` sets how the OAT and OATS runs are conditioned and trained (config.RECIPES); runs
recorded in the committed report of any recipe of the budget count as finished, so the
dedicated models, which no recipe changes, are trained once.
"""

import glob
import os
import subprocess
import sys
import time

from absl import app, flags

from oat_tf.config import RECIPES
from oat_tf.data import DATASETS
from oat_tf.reproduce.plan import BUDGETS

FLAGS = flags.FLAGS
flags.DEFINE_enum("budget", "cpu", sorted(BUDGETS), "Model size, data and evaluation budget.")
flags.DEFINE_enum("dataset", "cifar10", sorted(DATASETS), "Dataset.")
flags.DEFINE_string("data_dir", None, "Image-folder tree or .tar.gz of one; default: tensorflow-datasets.")
flags.DEFINE_enum("recipe", None, sorted(RECIPES), "OAT/OATS recipe (default: the budget's own: paper for paper, "
                  "cpu otherwise).")
flags.DEFINE_string("runs_dir", None, "Where the trained runs go (default runs/reproduce-<budget>-<recipe>).")
flags.DEFINE_string("out", None, "Report directory (default results/ for the cpu budget and recipe, "
                                 "results/reproduce-<budget>-<recipe>/ otherwise).")
flags.DEFINE_bool("report_only", False, "Only rewrite the report from what has finished.")


def recipe():
    return FLAGS.recipe or ("paper" if FLAGS.budget == "paper" else "cpu")


def directories():
    name = f"reproduce-{FLAGS.budget}-{recipe()}"
    runs_dir = FLAGS.runs_dir or os.path.join("runs", name)
    out = FLAGS.out or ("results" if (FLAGS.budget, recipe()) == ("cpu", "cpu") else os.path.join("results", name))
    return runs_dir, out


def recorded_reports(out):
    """{recipe: reproduce.json path} of the committed reports of this budget, this one's first."""
    reports = {recipe(): os.path.join(out, "reproduce.json")}
    if FLAGS.budget == "cpu":
        reports.setdefault("cpu", os.path.join("results", "reproduce.json"))
    for path in sorted(glob.glob(os.path.join("results", f"reproduce-{FLAGS.budget}-*", "reproduce.json"))):
        reports.setdefault(os.path.basename(os.path.dirname(path))[len(f"reproduce-{FLAGS.budget}-"):], path)
    return {name: path for name, path in reports.items() if os.path.exists(path)}


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
    plan = build_plan(budget, recipe())
    runs_dir, out = directories()
    reports = recorded_reports(out)
    try:
        if not FLAGS.report_only:
            from oat_tf.reproduce.runner import restore_recorded, run_plan
            from oat_tf.trainer import default_strategy

            for path in reports.values():
                restored = restore_recorded(plan, budget, runs_dir, FLAGS.dataset, FLAGS.data_dir, path)
                if restored:
                    print(f"[reproduce] finished earlier (from {path}): {', '.join(restored)}", flush=True)
            run_plan(plan, budget, runs_dir, FLAGS.dataset, FLAGS.data_dir, default_strategy(), write_report)
        others = {name: path for name, path in reports.items() if name != recipe()}
        report.write(plan, budget, runs_dir, FLAGS.dataset, FLAGS.data_dir, out, run_command(), recipe(), others)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(f"[reproduce] report in {out}/README.md")


if __name__ == "__main__":
    app.run(main)
