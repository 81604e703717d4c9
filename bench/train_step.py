"""Throughput of one full adversarial training step (attack + update), printed as JSON.

    python bench/train_step.py --model resnet34 --methods oat --batch_size 32
    python bench/train_step.py --model resnet20 --methods pgdat --batch_size 128 --xla false,true

The step is the trainer's own (`Trainer._train_step`: λ draws, the attack on the λ > 0
samples in inference mode, the loss, weight decay and the SGD update) on real CIFAR-10
batches. `achieved_gflops` counts 2 FLOPs per multiply-accumulate: a forward pass costs
the model's MACs, an attack step's input gradient about 2× that (forward + input
backward), a training pass 3× (forward + input and weight gradients).
"""

import json
import os
import resource
import tempfile
import time

import tensorflow as tf
from absl import app, flags

from oat_tf.config import METHODS, TrainConfig
from oat_tf.models.zoo import ARCHITECTURES
from oat_tf.provenance import provenance, write_json

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "resnet20", sorted(ARCHITECTURES), "Zoo network.")
flags.DEFINE_list("methods", ["oat", "oats", "pgdat"], f"Methods: {', '.join(sorted(METHODS))}.")
flags.DEFINE_float("width_multiplier", 1.0, "Channel multiplier.", lower_bound=1e-3)
flags.DEFINE_integer("batch_size", 128, "Global batch size.", lower_bound=2)
flags.DEFINE_string("attack", "pgd7", "Training attack.")
flags.DEFINE_float("lam", 1.0, "PGD-AT(S) fixed λ.")
flags.DEFINE_list("xla", ["false"], "XLA settings of the attack to measure (true/false).")
flags.DEFINE_integer("steps", 3, "Timed steps after one warm-up (tracing) step.", lower_bound=1)
flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                             "cifar10-jpeg.tar.gz"), "CIFAR-10 image folder or .tar.gz.")
flags.DEFINE_string("out", None, "Also write the JSON here (atomically).")


def flops_per_step(trainer, attack_steps):
    from oat_tf.summary import count_macs

    batch, clean = trainer.config.batch_size, trainer.num_clean * trainer.strategy.num_replicas_in_sync
    adversarial = batch - clean
    clean_pass = batch if not (trainer.sampler is None and trainer.config.lam == 1.0) else 0
    total = 0
    for width in trainer.model.widths:
        macs = count_macs(trainer.model, width)
        total += 2 * macs * (adversarial * attack_steps * 2 + (clean_pass + adversarial) * 3)
    return total


def measure(method, xla):
    from oat_tf.attacks import build_attack
    from oat_tf.trainer import Trainer

    steps = FLAGS.steps + 1
    with tempfile.TemporaryDirectory() as run_dir:
        config = TrainConfig(method=method, dataset="cifar10", data_dir=FLAGS.data_dir, run_dir=run_dir,
                             model=FLAGS.model, width_multiplier=FLAGS.width_multiplier, lam=FLAGS.lam,
                             batch_size=FLAGS.batch_size, train_attack=FLAGS.attack, xla=xla, epochs=1,
                             train_examples=FLAGS.batch_size * steps, validation_size=100)
        trainer = Trainer(config)
        times = []
        for i, batch in enumerate(trainer._dataset(0)):
            start = time.perf_counter()
            float(trainer._train_step(batch, tf.constant(i, tf.int64)))
            times.append(time.perf_counter() - start)
        best = min(times[1:])
        attack = build_attack(FLAGS.attack)
        attack_steps = getattr(attack, "steps", 1)
        flops = flops_per_step(trainer, attack_steps)
        return dict(method=method, xla=xla, widths=list(trainer.model.widths), first_step_s=round(times[0], 2),
                    seconds_per_step=round(best, 3), images_per_s=round(FLAGS.batch_size / best, 2),
                    gflops_per_step=round(flops / 1e9, 1), achieved_gflops=round(flops / best / 1e9, 1))


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    unknown = [m for m in FLAGS.methods if m not in METHODS]
    if unknown:
        raise app.UsageError(f"unknown methods {unknown}; choose from {sorted(METHODS)}.")
    results = [measure(method, flag.lower() == "true") for method in FLAGS.methods for flag in FLAGS.xla]
    result = provenance(benchmark="train_step_throughput", model=FLAGS.model, width_multiplier=FLAGS.width_multiplier,
                        batch_size=FLAGS.batch_size, attack=FLAGS.attack, timed_steps=FLAGS.steps,
                        data="CIFAR-10 (JPEG copy) training batches",
                        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                        results=results)
    print(json.dumps(result, indent=2))
    if FLAGS.out:
        write_json(FLAGS.out, result)


if __name__ == "__main__":
    app.run(main)
