import os
import subprocess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs, so tf.distribute tests can mirror over two replicas on one CPU.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(scope="session")
def two_replicas():
    """One MirroredStrategy over the two logical CPUs for the whole session: strategies created
    side by side in one process reuse collective instance keys and then abort on shape mismatches."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def run_step(step, command, timeout, **kwargs):
    """subprocess.run with text output captured. A step that outlives `timeout` (set to several
    times what it takes here) fails the test naming the step and its last output, rather than
    hanging the suite."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr or b""
        tail = (stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr)[-2000:]
        pytest.fail(f"{step} did not finish within {timeout} s; its last output:\n{tail}")


def images(rng, batch, size=32):
    return rng.random((batch, size, size, 3), dtype=np.float32)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR10 = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg.tar.gz")


@pytest.fixture(scope="session")
def cifar10():
    """The real CIFAR-10 copy (JPEG), as float images in [0, 1]: {split: (images, labels)}."""
    from oat_tf.data import load_split

    assert os.path.exists(CIFAR10), f"the CIFAR-10 copy is expected at {CIFAR10} (see ../shared/data/README.md)"
    data = {}
    for split in ("train", "test"):
        x, y, _ = load_split("cifar10", split, data_dir=CIFAR10)
        # The folder lists images class by class: shuffle so that any prefix covers every class.
        order = np.random.default_rng(0).permutation(len(y))
        data[split] = (x[order].astype("float32") / 255.0, y[order].astype("int32"))
    return data


@pytest.fixture(scope="session")
def trained_model(cifar10):
    """A small plain ResNet-20 (half width) trained for 3 epochs on 10k real CIFAR-10 images."""
    import keras

    from oat_tf import build_model

    keras.utils.set_random_seed(0)
    model = build_model("resnet20", "plain", width_multiplier=0.5)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = cifar10["train"]
    model.fit(x[:10000], y[:10000], batch_size=128, epochs=3, verbose=0)
    return model
