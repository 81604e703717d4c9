"""Why two replicas' float32 gradients differ from one device's in the first stage (issue 15).

    python experiments/replica_agreement.py

One training step's gradients of a quarter-width ResNet-20 (synchronized batch norm, 32 random
images) on one device and on two replicas (two logical CPUs), compared per parameter as
max |g₁ − g₂| / max |g₁|, in three settings: float32 with ReLU (what training runs), float64 with
ReLU, and float32 with GELU in place of ReLU. Exact distributed arithmetic predicts float64 to agree
to ~1e-13; if the float32 gap comes from ReLU units whose pre-activation lies within float32
rounding of 0 (the replicas sum their batch statistics in another order, so such a unit may be
on in one run and off in the other, switching its whole gradient), a smooth activation removes it.
Writes `--out` (JSON, with how it was made) and prints it.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import json  # noqa: E402

import keras  # noqa: E402
from absl import app, flags  # noqa: E402

from oat_tf.models.zoo import build_model  # noqa: E402
from oat_tf.provenance import provenance, write_json  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "results/replica_agreement.json", "JSON file to write.")
flags.DEFINE_integer("batch_size", 32, "Global batch (split evenly over the replicas).")

SETTINGS = (("float32", "relu"), ("float64", "relu"), ("float32", "gelu"))
GROUPS = ("stem", "stage1", "stage2", "stage3", "classifier")


def step_gradients(strategy, images, labels):
    """Gradients of the summed cross-entropy / global batch, all-reduced over the replicas."""
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = build_model("resnet20", "plain", width_multiplier=0.25,
                            synchronized_bn=strategy.num_replicas_in_sync > 1)
    per_replica = len(labels) // strategy.num_replicas_in_sync

    def shard(index):
        return strategy.experimental_distribute_values_from_function(
            lambda context: index[context.replica_id_in_sync_group * per_replica:][:per_replica])

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, logits, True)) / len(labels)
        grads = tape.gradient(loss, model.trainable_variables)
        return tf.distribute.get_replica_context().all_reduce("sum", grads)

    grads = tf.function(lambda x, y: strategy.run(replica_step, args=(x, y)))(shard(images), shard(labels))
    return {v.path: strategy.experimental_local_results(g)[0].numpy() for v, g in zip(model.trainable_variables, grads)}


def compare(one, two):
    """{group: worst relative difference over its parameters}."""
    worst = {}
    for path, a in one.items():
        group = next(g for g in GROUPS if f"/{g}" in path)
        relative = float(np.abs(a - two[path]).max() / max(np.abs(a).max(), 1e-30))
        worst[group] = max(worst.get(group, 0.0), relative)
    return worst


def main(argv):
    del argv
    strategies = [tf.distribute.MirroredStrategy(["/cpu:0"]), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])]
    rng = np.random.default_rng(0)
    images = rng.random((FLAGS.batch_size, 32, 32, 3))
    labels = rng.integers(0, 10, FLAGS.batch_size).astype("int32")
    relu = keras.ops.relu
    results = []
    for dtype, activation in SETTINGS:
        keras.config.set_dtype_policy(dtype)
        # The blocks call keras.ops.relu at run time: swapping it is the smooth control.
        keras.ops.relu = relu if activation == "relu" else keras.ops.gelu
        try:
            one, two = (step_gradients(s, images.astype(dtype), labels) for s in strategies)
        finally:
            keras.ops.relu = relu
            keras.config.set_dtype_policy("float32")
        results.append(dict(dtype=dtype, activation=activation, worst_relative_difference=compare(one, two)))
    record = dict(provenance(model="resnet20 ×0.25, plain, synchronized BN", data=f"{FLAGS.batch_size} uniform "
                             "random 32×32×3 images, random labels (seed 0)"),
                  metric="max |g_1device − g_2replicas| / max |g_1device| over each group's parameters, one step",
                  results=results)
    write_json(FLAGS.out, record)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
