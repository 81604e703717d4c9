"""Pretrained models as presets: directories in the style of Keras Hub's, loadable offline.

A preset directory holds

    config.json        the network's Keras config (`keras.saving.serialize_keras_object`)
    model.weights.h5   its weights (`model.save_weights`)
    metadata.json      class names, the training config, metrics and how it was made

Named presets ship inside the package (`oat_tf/presets/<name>/`); any directory of this
layout loads by its path.

    model = oat_tf.from_preset("oats_resnet20_cifar10")
    logits = model({"image": x, "lam": lam}, width=0.5)
"""

import json
import os
import shutil
import tempfile

PRESET_FILES = ("config.json", "model.weights.h5", "metadata.json")
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")


def list_presets():
    """Names of the presets shipped with the package, sorted."""
    if not os.path.isdir(SHIPPED):
        return []
    return sorted(name for name in os.listdir(SHIPPED) if is_preset(os.path.join(SHIPPED, name)))


def is_preset(path):
    """Whether `path` is a directory holding every preset file."""
    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in PRESET_FILES)


def preset_path(name_or_path):
    """The directory of a shipped preset's name or of a preset path; FileNotFoundError naming what is missing."""
    if os.path.isdir(name_or_path):
        path = name_or_path
    elif os.sep not in name_or_path and os.path.isdir(os.path.join(SHIPPED, name_or_path)):
        path = os.path.join(SHIPPED, name_or_path)
    else:
        raise FileNotFoundError(f"no preset {name_or_path!r}: it is neither a directory nor a shipped preset "
                                f"(shipped: {', '.join(list_presets()) or 'none'}).")
    missing = [f for f in PRESET_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(f"{path!r} is not a complete preset: {', '.join(missing)} missing "
                                f"(a preset holds {', '.join(PRESET_FILES)}).")
    return path


def preset_metadata(name_or_path):
    """The preset's metadata.json as a dict (class names, training config, metrics, provenance)."""
    from oat_tf.provenance import read_json

    return read_json(os.path.join(preset_path(name_or_path), "metadata.json"))


def from_preset(name_or_path):
    """The network of a shipped preset (by name, see `list_presets()`) or of a preset directory,
    with its trained weights; nothing is downloaded.

    Args:
        name_or_path: a shipped preset's name, or the path of a directory of the preset layout.

    Returns:
        The `keras.Model` (an `OATNetwork`), called as `model({"image": x, "lam": lam}, width=α)`.

    Raises:
        FileNotFoundError: no such preset, or a file of the layout is missing (named).
        ValueError: config.json or the weights are unreadable or do not fit each other.
    """
    import keras

    import oat_tf.models  # noqa: F401  registers the project's layers
    from oat_tf.provenance import read_json

    path = preset_path(name_or_path)
    config_path, weights_path = (os.path.join(path, f) for f in PRESET_FILES[:2])
    try:
        model = keras.saving.deserialize_keras_object(read_json(config_path))
    except (TypeError, KeyError) as error:
        raise ValueError(f"{config_path!r} does not describe a network of this package: {error}") from None
    try:
        model.load_weights(weights_path)
    except (ValueError, OSError) as error:
        raise ValueError(f"{weights_path!r} is unreadable or does not fit {config_path!r}: "
                         f"{str(error)[:300]}") from None
    return model


def save_preset(model, directory, metadata):
    """Writes `model` and `metadata` (a JSON-able dict) as a preset directory, atomically: the
    directory appears complete or not at all, and an existing one is replaced only then."""
    import keras

    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".tmp-preset-")
    try:
        with open(os.path.join(staging, "config.json"), "w") as f:
            json.dump(keras.saving.serialize_keras_object(model), f, indent=2)
        model.save_weights(os.path.join(staging, "model.weights.h5"))
        with open(os.path.join(staging, "metadata.json"), "w") as f:
            json.dump(metadata, f, indent=2)
            f.write("\n")
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    return directory
