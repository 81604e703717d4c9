"""Standard and robust accuracy per (λ, width, attack), with a worst case over attacks.

    python -m oat_tf.evaluate --checkpoint RUN_DIR_OR_MODEL.keras --dataset cifar10 \
        --data_dir ../shared/data/cifar10-jpeg.tar.gz --split test \
        --lambdas 0,0.1,0.2,0.3,0.4,1 --widths 0.5,0.75,1 --attacks pgd7,pgd20,mifgsm,fgsm,apgd-ce,apgd-t \
        --out results/eval

writes `sa_ra.csv`, `sa_ra.json` (with how it was made) and `sa_ra.png` (one curve per width and attack).
"""

import csv
import io
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from oat_tf.attacks import DEFAULT_EPSILON, build_attack
from oat_tf.lambdas import S1
from oat_tf.layers.slimming import width_index
from oat_tf.provenance import provenance, write_atomic, write_json

WORST_CASE = "worst-case"


def load_model(checkpoint):
    """A saved model: a `.keras` file, a run directory holding `model.keras`, or a preset (a shipped
    preset's name or a preset directory, `oat_tf.presets`)."""
    from oat_tf.presets import SHIPPED, from_preset, is_preset

    if is_preset(checkpoint) or is_preset(os.path.join(SHIPPED, checkpoint)):
        return from_preset(checkpoint)
    path = os.path.join(checkpoint, "model.keras") if os.path.isdir(checkpoint) else checkpoint
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no saved model at {path!r}: pass a .keras file or a run directory with model.keras.")
    import oat_tf.models  # noqa: F401  registers the project's layers for loading

    return keras.saving.load_model(path, safe_mode=True)


def _validate(model, lambdas, widths, attacks):
    for lam in lambdas:
        if math.isnan(lam) or not 0.0 <= lam <= 1.0:
            raise ValueError(f"every λ must lie in [0, 1], got {lam}.")
    for width in widths:
        width_index(model.widths, width)
    if not attacks:
        raise ValueError("give at least one attack.")


def evaluate(
    model, images, labels, lambdas=S1, widths=None, attacks=("pgd20",), epsilon=DEFAULT_EPSILON,
    num_robust=None, batch_size=256, seed=0, jit_compile=False, progress=True,
):
    """Rows of {lambda, width, attack, sa, ra, n_clean, n_robust}.

    SA is measured on all `images` (float, [0, 1]); RA on the first `num_robust` of them
    (all by default), under each attack and as a per-sample worst case over the
    attacks (`attack="worst-case"`: robust only if it survives every attack).
    Sample i's random start is seeded by (seed, i), so results do not depend on batching.
    """
    widths = list(model.widths) if widths is None else [float(w) for w in widths]
    lambdas = [float(v) for v in lambdas]
    _validate(model, lambdas, widths, attacks)
    built = {name: build_attack(name, epsilon, jit_compile) for name in attacks}
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
    n_clean = len(labels)
    n_robust = n_clean if num_robust is None else min(int(num_robust), n_clean)
    starts_clean, starts_robust = range(0, n_clean, batch_size), range(0, n_robust, batch_size)
    bar = keras.utils.Progbar(len(widths) * len(lambdas) * (len(starts_clean) + len(attacks) * len(starts_robust)),
                              verbose=1 if progress else 0, unit_name="batch")
    predictions = {}

    def correct(x, lam, width):
        if width not in predictions:
            predictions[width] = tf.function(
                lambda x, lam: tf.argmax(model({"image": x, "lam": lam}, width=width, training=False), 1,
                                         output_type=tf.int32),
                jit_compile=jit_compile, reduce_retracing=True,
            )
        return predictions[width](x, lam)

    rows = []
    for width in widths:
        for lam in lambdas:
            clean = []
            for start in starts_clean:
                x, y = images[start : start + batch_size], labels[start : start + batch_size]
                clean.append(np.asarray(correct(x, np.full(len(y), lam, np.float32), width)) == y)
                bar.add(1)
            sa = float(np.mean(np.concatenate(clean)))
            survived = {}
            for name, attack in built.items():
                robust = []
                for start in starts_robust:
                    end = min(start + batch_size, n_robust)
                    x, y = images[start:end], labels[start:end]
                    lam_batch = np.full(len(y), lam, np.float32)
                    seeds = np.stack([np.full(len(y), seed), np.arange(start, start + len(y))], 1).astype(np.int32)
                    x_adv = attack(model, x, y, lam_batch, width=width, seeds=seeds)
                    robust.append(np.asarray(correct(x_adv, lam_batch, width)) == y)
                    bar.add(1)
                survived[name] = np.concatenate(robust)
            if len(built) > 1:
                survived[WORST_CASE] = np.logical_and.reduce(list(survived.values()))
            for name, mask in survived.items():
                rows.append({"lambda": lam, "width": width, "attack": name, "sa": sa, "ra": float(np.mean(mask)),
                             "n_clean": n_clean, "n_robust": n_robust})
    return rows


def load_evaluation_data(dataset, split="test", data_dir=None, seed=0, num_clean=None):
    """(float images in [0, 1], labels) of `split` in a seeded random order, the first `num_clean` (all if None).

    The folder copy lists images class by class: the permutation makes every prefix (the RA
    subset) a fair sample of the split.
    """
    from oat_tf.data import load_split

    images, labels, _ = load_split(dataset, split, data_dir=data_dir)
    order = np.random.default_rng(seed).permutation(len(labels))[:num_clean]
    return images[order].astype(np.float32) / 255.0, labels[order]


def rows_to_csv(rows):
    columns = ["lambda", "width", "attack", "sa", "ra", "n_clean", "n_robust"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in columns})
    return buffer.getvalue()


def write_results(rows, out_dir, **metadata):
    """sa_ra.csv, sa_ra.json (rows + provenance) and sa_ra.png in `out_dir`, each written atomically."""
    from oat_tf.plots import plot_tradeoff

    os.makedirs(out_dir, exist_ok=True)
    text = rows_to_csv(rows)

    def write_csv(temporary):
        with open(temporary, "w") as f:
            f.write(text)

    write_atomic(os.path.join(out_dir, "sa_ra.csv"), write_csv)
    write_json(os.path.join(out_dir, "sa_ra.json"), dict(provenance(**metadata), rows=rows))
    subtitle = f"{metadata.get('data', '')}, ε = {metadata.get('epsilon_255', 8):g}/255"
    plot_tradeoff(rows, os.path.join(out_dir, "sa_ra.png"), subtitle=subtitle)


FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags, defined only when run as a program (the module is also a library)."""
    flags.DEFINE_string("checkpoint", None, "A .keras model file, or a run directory holding model.keras.")
    flags.DEFINE_string("dataset", "cifar10", "Dataset name (cifar10, svhn, stl10).")
    flags.DEFINE_string("data_dir", None, "Image-folder tree or .tar.gz of one; default: tensorflow-datasets.")
    flags.DEFINE_enum("split", "test", ["val", "test"], "Split to evaluate on.")
    flags.DEFINE_list("lambdas", [str(v) for v in S1], "λ values to evaluate, any in [0, 1].")
    flags.DEFINE_list("widths", None, "Width factors (default: all of the model's).")
    flags.DEFINE_list("attacks", ["pgd20"], "Attacks: fgsm, mifgsm, pgd<N>, pgd<N>-cw, pgd<N>-ref, apgd-ce, apgd-t.")
    flags.DEFINE_float("epsilon", 8.0, "L∞ budget in units of 1/255.", lower_bound=0.0)
    flags.DEFINE_integer("num_clean", None, "Images for SA (default: the whole split).", lower_bound=1)
    flags.DEFINE_integer("num_robust", 2000, "Images for RA (the first of the SA images).", lower_bound=1)
    flags.DEFINE_integer("batch_size", 256, "Evaluation batch size.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the subset choice and the attacks' random starts.")
    flags.DEFINE_bool("xla", False, "XLA-compile attacks and inference (slower on CPU with TF 2.21).")
    flags.DEFINE_string("out", None, "Output directory for sa_ra.csv/json/png.")
    flags.mark_flags_as_required(["checkpoint", "out"])


def main(argv):
    del argv
    lambdas = [float(v) for v in FLAGS.lambdas]
    widths = None if FLAGS.widths is None else [float(w) for w in FLAGS.widths]
    for name in FLAGS.attacks:
        build_attack(name)  # unknown names fail before the model and data load
    model = load_model(FLAGS.checkpoint)
    _validate(model, lambdas, widths or model.widths, FLAGS.attacks)
    images, labels = load_evaluation_data(FLAGS.dataset, FLAGS.split, FLAGS.data_dir, FLAGS.seed, FLAGS.num_clean)
    rows = evaluate(model, images, labels, lambdas, widths, FLAGS.attacks, FLAGS.epsilon / 255.0,
                    FLAGS.num_robust, FLAGS.batch_size, FLAGS.seed, FLAGS.xla)
    data = f"{FLAGS.dataset} {FLAGS.split}" + (" (JPEG copy)" if FLAGS.data_dir else " (tensorflow-datasets)")
    write_results(rows, FLAGS.out, data=data, checkpoint=FLAGS.checkpoint, epsilon_255=FLAGS.epsilon, seed=FLAGS.seed)
    for row in rows:
        print(f"λ={row['lambda']:<5g} width={row['width']:<5g} {row['attack']:<11} "
              f"SA={100 * row['sa']:.2f}%  RA={100 * row['ra']:.2f}%")
    print(f"wrote {FLAGS.out}/sa_ra.csv, sa_ra.json, sa_ra.png")


if __name__ == "__main__":
    define_flags()
    app.run(main)
