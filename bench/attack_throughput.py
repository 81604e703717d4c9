"""Attack throughput (images/s) of PGD on a zoo model, with and without XLA, printed as JSON.

    python bench/attack_throughput.py --model resnet20 --variant oat --batch_size 128 --steps 7
"""

import json
import os
import time

import numpy as np
from absl import app, flags

from oat_tf import ARCHITECTURES, VARIANTS, build_model
from oat_tf.attacks import LinfPGD
from oat_tf.provenance import provenance

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "resnet20", sorted(ARCHITECTURES), "Zoo network.")
flags.DEFINE_enum("variant", "oat", sorted(VARIANTS), "Variant.")
flags.DEFINE_float("width_multiplier", 1.0, "Channel multiplier.", lower_bound=1e-3)
flags.DEFINE_float("width", 1.0, "Width factor the attack runs at.")
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_integer("steps", 7, "PGD steps.", lower_bound=1)
flags.DEFINE_integer("repeats", 3, "Timed calls after one warm-up (compilation) call.", lower_bound=1)
flags.DEFINE_list("xla", ["true", "false"], "XLA settings to measure.")


def measure(model, jit_compile):
    rng = np.random.default_rng(0)
    x = rng.random((FLAGS.batch_size, model.image_size, model.image_size, 3), dtype=np.float32)
    y = rng.integers(0, model.num_classes, FLAGS.batch_size)
    lam = rng.choice([0.1, 0.2, 0.3, 0.4, 1.0], FLAGS.batch_size).astype(np.float32)
    attack = LinfPGD(steps=FLAGS.steps, step_size=2 / 255, jit_compile=jit_compile)
    start = time.perf_counter()
    np.asarray(attack(model, x, y, lam, width=FLAGS.width))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        np.asarray(attack(model, x, y, lam, width=FLAGS.width))
        times.append(time.perf_counter() - start)
    best = min(times)
    return dict(xla=jit_compile, first_call_s=round(compile_s, 2), seconds_per_batch=round(best, 3),
                images_per_s=round(FLAGS.batch_size / best, 1))


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model = build_model(FLAGS.model, FLAGS.variant, width_multiplier=FLAGS.width_multiplier)
    results = [measure(model, flag.lower() == "true") for flag in FLAGS.xla]
    print(json.dumps(provenance(
        benchmark="pgd_attack_throughput", model=FLAGS.model, variant=FLAGS.variant,
        width_multiplier=FLAGS.width_multiplier, width=FLAGS.width, batch_size=FLAGS.batch_size,
        steps=FLAGS.steps, results=results), indent=2))


if __name__ == "__main__":
    app.run(main)
