"""Export a trained run as per-width SavedModel + TFLite bundles with λ as a runtime input.

    python export/export.py --checkpoint runs/oats-cifar10-cpu --out bundles/oats-cifar10-cpu \
        --data_dir ../shared/data/cifar10-jpeg.tar.gz

Writes BUNDLE/width_<α>/{saved_model, model_<format>.tflite}, the multi-signature file when it
is small enough, and manifest.json with the SA/RA table per (width, λ, format); see oat_tf/export.py.
"""

import sys

import numpy as np
from absl import app, flags

from oat_tf.export import FORMATS

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "Training run directory (config.json + checkpoints/).", required=True)
flags.DEFINE_string("out", None, "Bundle directory to write.", required=True)
flags.DEFINE_list("widths", None, "Widths to export (default: every trained width).")
flags.DEFINE_list("formats", list(FORMATS), f"TFLite formats: {', '.join(FORMATS)}.")
flags.DEFINE_string("data_dir", None, "Image-folder tree or .tar.gz; default: tensorflow-datasets.")
flags.DEFINE_integer("representative_examples", 200, "Training images that calibrate full int8.")
flags.DEFINE_integer("eval_examples", 1000, "Test images for SA in the manifest (0: no evaluation).")
flags.DEFINE_integer("robust_examples", 500, "Test images (the first of eval_examples) for RA.")
flags.DEFINE_string("eval_attack", "pgd20", "Attack crafted on the float model for RA.")
flags.DEFINE_list("eval_lambdas", None, "λ values in the table (default: the training grid).")
flags.DEFINE_bool("overwrite", False, "Replace an existing bundle (only once the new one is complete).")
flags.DEFINE_integer("film_table_points", 101, "Most λ knots of the λ tables, which replace FiLM's MLP when they "
                     "are smaller and within 1e-3 of it at every width (0: always keep the MLP).", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the data subsets and attack starts.")


def main(argv):
    del argv
    from oat_tf.config import flag_numbers
    from oat_tf.data import load_split
    from oat_tf.evaluate import load_evaluation_data
    from oat_tf.export import bundle_evaluation, export_bundle, representative_dataset
    from oat_tf.provenance import provenance
    from oat_tf.trainer import load_run

    try:
        widths = FLAGS.widths and list(flag_numbers("widths", FLAGS.widths))
        eval_lambdas = FLAGS.eval_lambdas and list(flag_numbers("eval_lambdas", FLAGS.eval_lambdas))
        model, config, class_names = load_run(FLAGS.checkpoint)
        data_dir = FLAGS.data_dir or config.data_dir or None
        train_images, _, _ = load_split(config.dataset, "train", data_dir, validation_size=config.validation_size,
                                        seed=config.seed)
        representative = representative_dataset(train_images / np.float32(255), model.lam_grid,
                                                FLAGS.representative_examples, FLAGS.seed)
        evaluation, data = None, "not evaluated"
        if FLAGS.eval_examples > 0:
            images, labels = load_evaluation_data(config.dataset, "test", data_dir, FLAGS.seed, FLAGS.eval_examples)
            lambdas = eval_lambdas or list(model.lam_grid)
            evaluation = bundle_evaluation(images, labels, lambdas, FLAGS.eval_attack,
                                           config.epsilon_255 / 255, FLAGS.robust_examples, seed=FLAGS.seed)
            data = f"{config.dataset} test split" + (" (JPEG copy)" if data_dir else "") + f", seeded subset of {len(labels)}"
        manifest = export_bundle(
            model, FLAGS.out, class_names, representative, widths=widths,
            formats=FLAGS.formats, evaluation=evaluation, overwrite=FLAGS.overwrite,
            film_table_points=FLAGS.film_table_points,
            provenance_fields=provenance(source_run=FLAGS.checkpoint, model=config.model, variant=config.variant,
                                         method=config.method, data=data),
        )
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote {FLAGS.out}: {len(manifest['files'])} files, {len(manifest['evaluation']['rows'])} SA/RA rows")


if __name__ == "__main__":
    app.run(main)
