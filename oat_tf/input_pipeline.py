"""tf.data input pipeline: decoded once into memory, deterministic shuffling and augmentation per epoch."""

import numpy as np
import tensorflow as tf

# Random crop after 4-pixel zero padding and horizontal flip for CIFAR-10 and STL-10 (paper); none for SVHN.
AUGMENTED = {"cifar10": True, "stl10": True, "svhn": False}


def augment(image, seed):
    """Pad by 4, random crop back to size, random horizontal flip; stateless under `seed` (2,)."""
    size = tf.shape(image)[0]
    padded = tf.pad(image, [[4, 4], [4, 4], [0, 0]])
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.image.stateless_random_crop(padded, [size, size, 3], crop_seed)
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def training_dataset(images, labels, batch_size, epoch, seed, augmentation=True):
    """One epoch of (float images in [0, 1], int32 labels, sample ids) batches, drop_remainder=True.

    Order and augmentation depend only on (seed, epoch), so a resumed epoch repeats exactly.
    """
    order = np.random.default_rng([seed, epoch]).permutation(len(labels))
    dataset = tf.data.Dataset.from_tensor_slices((images[order], labels[order].astype(np.int32), order))

    def prepare(image, label, index):
        image = tf.cast(image, tf.float32) / 255.0
        if augmentation:
            image = augment(image, tf.stack([tf.cast(seed, tf.int64) * 1000003 + epoch, tf.cast(index, tf.int64)]))
        return image, label, tf.cast(index, tf.int32)

    return (
        dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
