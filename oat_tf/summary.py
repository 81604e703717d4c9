"""Parameters and multiply-accumulates per width of a zoo model, next to its plain counterpart.

    python -m oat_tf.summary --model resnet34 --variant oats
"""

import json

import tensorflow as tf
from absl import app, flags

from oat_tf.models.zoo import ARCHITECTURES, VARIANTS, build_model


def count_macs(model, width=1.0):
    """Multiply-accumulates of one inference at batch 1 and `width` (TF profiler float ops / 2)."""
    size = model.image_size
    forward = tf.function(lambda image, lam: model({"image": image, "lam": lam}, width=width, training=False))
    graph = forward.get_concrete_function(
        tf.TensorSpec((1, size, size, 3), tf.float32), tf.TensorSpec((1,), tf.float32)
    ).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops // 2


def summarize(name, variant, image_size=32, width_multiplier=1.0):
    """Rows (dicts) of parameters and MACs per width for `variant` and the plain network."""
    model = build_model(name, variant, image_size=image_size, width_multiplier=width_multiplier)
    plain_widths = model.widths if len(model.widths) > 1 else (1.0,)
    plain = build_model(
        name, "slimmable" if len(plain_widths) > 1 else "plain", image_size=image_size,
        width_multiplier=width_multiplier, widths=plain_widths,
    )
    rows = []
    for width in model.widths:
        macs, plain_macs = count_macs(model, width), count_macs(plain, width)
        rows.append(
            dict(
                model=name, variant=variant, width=width, params=model.count_params(),
                plain_params=plain.count_params(), macs=macs, plain_macs=plain_macs,
                overhead_percent=round(100.0 * (macs - plain_macs) / plain_macs, 2),
            )
        )
    return rows


FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags, defined only when run as a program (the module is also a library)."""
    flags.DEFINE_enum("model", "resnet34", sorted(ARCHITECTURES), "Zoo network.")
    flags.DEFINE_enum("variant", "oats", sorted(VARIANTS), "Variant of the network.")
    flags.DEFINE_integer("image_size", 32, "Input height and width.", lower_bound=8)
    flags.DEFINE_float("width_multiplier", 1.0, "Scales every channel count.", lower_bound=1e-3)
    flags.DEFINE_bool("json", False, "Print JSON instead of a table.")


def main(argv):
    del argv
    rows = summarize(FLAGS.model, FLAGS.variant, FLAGS.image_size, FLAGS.width_multiplier)
    if FLAGS.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{FLAGS.model} / {FLAGS.variant}: {rows[0]['params']:,} parameters "
          f"(plain network: {rows[0]['plain_params']:,}); MACs at batch 1, {FLAGS.image_size}×{FLAGS.image_size}")
    print(f"{'width':>6} {'GMACs':>9} {'plain GMACs':>12} {'overhead':>9}")
    for r in rows:
        print(f"{r['width']:>6g} {r['macs'] / 1e9:>9.4f} {r['plain_macs'] / 1e9:>12.4f} {r['overhead_percent']:>8.2f}%")


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
