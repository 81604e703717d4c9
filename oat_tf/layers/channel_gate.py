"""Channels private to the clean or to the robust end of the λ range."""

import keras
import numpy as np
from keras import ops

from oat_tf.layers.slimming import channels_at, validate_widths, width_index


def private_masks(channels, share):
    """(clean, robust) boolean vectors of length `channels`, disjoint and evenly spaced, each with about
    share·channels ones (share ≤ 0.5). Every run of 1/share consecutive channels holds one of each, so
    a slimmed layer (its leading channels) keeps the proportions."""
    index = np.arange(channels)
    clean = np.floor((index + 1) * share) > np.floor(index * share)
    robust = np.floor((index + 1) * share + 0.5) > np.floor(index * share + 0.5)
    return clean, robust


@keras.saving.register_keras_serializable(package="oat_tf")
class LambdaChannelGate(keras.layers.Layer):
    """g(λ) per sample and channel: 1 on shared channels, 1 − λ on the channels private to the clean
    end, λ on those private to the robust end (a share `share` of the channels each).

    At λ = 0 the robust channels are off and at λ = 1 the clean ones, so each end has channels that
    the other end's loss barely trains. Input λ of shape (B,); output (B, C_α) at width α, with
    C_α = ⌊α·C⌋. No weights.
    """

    def __init__(self, channels, share, widths=(1.0,), **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < float(share) <= 0.5:
            raise ValueError(f"the private share of channels must lie in (0, 0.5], got {share}.")
        self.channels = int(channels)
        self.share = float(share)
        self.widths = validate_widths(widths)

    def call(self, lam, width=1.0):
        width_index(self.widths, width)
        clean, robust = (m.astype(self.compute_dtype) for m in private_masks(channels_at(width, self.channels), self.share))
        lam = ops.reshape(ops.cast(lam, self.compute_dtype), (-1, 1))
        return (1.0 - clean - robust) + clean * (1.0 - lam) + robust * lam

    def compute_output_shape(self, lam_shape, width=1.0):
        return (lam_shape[0], channels_at(width, self.channels))

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, share=self.share, widths=list(self.widths))
        return config
