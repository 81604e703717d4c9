"""Ablations of OAT's conditioning at the `cpu` budget, on the validation split.

    python experiments/ablate.py --data_dir=../shared/data/cifar10-jpeg.tar.gz

trains the dedicated ends (standard, PGD-AT at λ = 1), today's OAT recipe, one run per
change and the two equivalence checks in `--runs_dir`, evaluates each on the validation
split and rewrites `--out`/README.md and ablation.json after every job. Rerunning skips
finished trainings and evaluations and resumes an interrupted training from its last epoch;
runs recorded in the committed ablation.json count as finished in a new checkout.
"""

import os
import sys

from absl import app, flags

from oat_tf.data import DATASETS

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "cifar10", sorted(DATASETS), "Dataset.")
flags.DEFINE_string("data_dir", None, "Image-folder tree or .tar.gz of one; default: tensorflow-datasets.")
flags.DEFINE_string("runs_dir", "runs/ablation-cpu", "Where the trained runs go.")
flags.DEFINE_string("out", "results/ablation", "Report directory.")
flags.DEFINE_bool("report_only", False, "Only rewrite the report from what has finished.")


def main(argv):
    del argv
    from oat_tf.reproduce import ablation

    plan = ablation.build_plan()
    descriptions = ablation.descriptions()
    command = " ".join(["python", "experiments/ablate.py"] + [a for a in sys.argv[1:] if not a.startswith("--report")])

    def report():
        ablation.write(plan, FLAGS.runs_dir, FLAGS.dataset, FLAGS.data_dir, FLAGS.out, command, descriptions)

    try:
        if not FLAGS.report_only:
            from oat_tf.reproduce.runner import restore_recorded, run_plan
            from oat_tf.trainer import default_strategy

            restored = restore_recorded(plan, ablation.BUDGET, FLAGS.runs_dir, FLAGS.dataset, FLAGS.data_dir,
                                        os.path.join(FLAGS.out, "ablation.json"))
            if restored:
                print(f"[ablate] finished earlier (from {FLAGS.out}/ablation.json): {', '.join(restored)}", flush=True)
            run_plan(plan, ablation.BUDGET, FLAGS.runs_dir, FLAGS.dataset, FLAGS.data_dir, default_strategy(), report)
        report()
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(f"[ablate] report in {FLAGS.out}/README.md")


if __name__ == "__main__":
    app.run(main)
