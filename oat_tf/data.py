"""Datasets: tensorflow-datasets when prepared, else an image-folder tree or a .tar.gz of one.

An image folder is laid out as `<split>/<class>/<image>` (e.g. the CIFAR-10 JPEG copy in
`../shared/data/cifar10-jpeg.tar.gz`). Images are decoded once into uint8 arrays and
cached as `.npz` next to nothing the user owns: in `cache_dir` (default
`~/.cache/oat_tf`). The training split can hold out a seeded validation subset
(CIFAR-10: 45k train / 5k validation, as the reference code), so model selection
never looks at the test split.
"""

import hashlib
import io
import os
import tarfile

import numpy as np

from oat_tf.provenance import file_sha256

DATASETS = {
    # name → (tfds name, image size, validation images held out of the training split)
    "cifar10": ("cifar10", 32, 5000),
    "svhn": ("svhn_cropped", 32, 5000),
    "stl10": ("stl10", 96, 500),
}
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class DataNotFoundError(FileNotFoundError):
    """No copy of the dataset could be found; the message says what was looked for."""


def _decode(data):
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)


def _collect(entries):
    """entries: iterable of (split, class, bytes) → {split: (images, labels)}, class names."""
    grouped = {}
    for split, name, data in entries:
        grouped.setdefault(split, []).append((name, _decode(data)))
    if not grouped:
        raise DataNotFoundError("no images found in the image-folder data (expected <split>/<class>/<image>).")
    class_names = sorted({name for items in grouped.values() for name, _ in items})
    index = {name: i for i, name in enumerate(class_names)}
    splits = {}
    for split, items in grouped.items():
        images = np.stack([image for _, image in items])
        labels = np.asarray([index[name] for name, _ in items], np.int64)
        splits[split] = (images, labels)
    return splits, class_names


def _tar_entries(path):
    # Archive order: random access into a .tar.gz is quadratic.
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            parts = member.name.strip("./").split("/")
            if member.isfile() and len(parts) >= 3 and parts[-1].lower().endswith(IMAGE_SUFFIXES):
                yield parts[-3], parts[-2], archive.extractfile(member).read()


def _folder_entries(root):
    for split in sorted(os.listdir(root)):
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            continue
        for name in sorted(os.listdir(split_dir)):
            class_dir = os.path.join(split_dir, name)
            if os.path.isdir(class_dir):
                for file in sorted(os.listdir(class_dir)):
                    if file.lower().endswith(IMAGE_SUFFIXES):
                        with open(os.path.join(class_dir, file), "rb") as f:
                            yield split, name, f.read()


def _cache_path(path, cache_dir):
    if os.path.isfile(path):  # an archive: keyed by its content, so a fresh copy of the same file reuses the cache
        key = file_sha256(path)[:16]
    else:
        stat = os.stat(path)
        key = hashlib.sha256(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"{os.path.basename(path.rstrip('/'))}-{key}.npz")


def load_image_folder(path, cache_dir=None):
    """Decodes an image-folder tree or archive into {split: (uint8 images, int labels)} and class names."""
    if not os.path.exists(path):
        raise DataNotFoundError(f"data path {path!r} does not exist (expected a folder or .tar.gz of <split>/<class>/<image>).")
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "oat_tf")
    cache = _cache_path(path, cache_dir)
    if os.path.exists(cache):
        with np.load(cache) as stored:
            class_names = [str(n) for n in stored["class_names"]]
            splits = {s: (stored[f"{s}_images"], stored[f"{s}_labels"]) for s in ("train", "test") if f"{s}_images" in stored}
            return splits, class_names
    entries = _folder_entries(path) if os.path.isdir(path) else _tar_entries(path)
    splits, class_names = _collect(entries)
    os.makedirs(cache_dir, exist_ok=True)
    arrays = {f"{s}_{kind}": a for s, pair in splits.items() for kind, a in zip(("images", "labels"), pair)}
    temporary = f"{cache}.{os.getpid()}.tmp.npz"
    np.savez(temporary, class_names=np.asarray(class_names), **arrays)
    os.replace(temporary, cache)  # atomic: a killed run never leaves a truncated cache
    return splits, class_names


def _load_tfds(name, split):
    import tensorflow_datasets as tfds

    tfds_name = DATASETS[name][0]
    tfds_split = "train" if split == "val" else split
    try:
        dataset, info = tfds.load(tfds_name, split=tfds_split, download=False, batch_size=-1, with_info=True)
    except Exception as error:  # tfds raises several types when the data is not prepared
        raise DataNotFoundError(
            f"dataset {name!r} is not prepared for tensorflow-datasets ({error.__class__.__name__}: {error}). "
            f"Prepare it with `tfds build {tfds_name}` on a machine with internet, or pass --data_dir "
            "pointing at an image-folder tree or .tar.gz of <split>/<class>/<image> "
            "(e.g. ../shared/data/cifar10-jpeg.tar.gz)."
        ) from None
    images, labels = tfds.as_numpy(dataset)["image"], tfds.as_numpy(dataset)["label"]
    return images, labels.astype(np.int64), info.features["label"].names


def load_split(name, split, data_dir=None, cache_dir=None, validation_size=None, seed=0):
    """Returns (uint8 images (N, S, S, 3), int64 labels (N,), class names) of `split` of dataset `name`.

    `split` is "train" (minus the held-out validation images), "val" or "test".
    `validation_size` defaults to the dataset's (5,000 for CIFAR-10); the held-out
    images are a seeded random subset of the training split. "train" and "val" come in a
    seeded random order (any prefix is a fair subset); "test" in the source's order.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}.")
    if data_dir:
        splits, class_names = load_image_folder(data_dir, cache_dir)
        source = "train" if split == "val" else split
        if source not in splits:
            raise DataNotFoundError(f"{data_dir!r} has no {source!r} split; found {sorted(splits)}.")
        images, labels = splits[source]
    else:
        images, labels, class_names = _load_tfds(name, split)
    expected = DATASETS[name][1]
    if images.shape[1:] != (expected, expected, 3):
        raise ValueError(f"{name} images must be {expected}×{expected}×3, got {images.shape[1:]} from the data.")
    if split == "test":
        return images, labels, class_names
    held_out = DATASETS[name][2] if validation_size is None else int(validation_size)
    order = np.random.default_rng(seed).permutation(len(labels))
    # Both stay in the permuted order: folders list images class by class, so a prefix of a
    # sorted split would hold one class only.
    chosen = order[:held_out] if split == "val" else order[held_out:]
    return images[chosen], labels[chosen], class_names
