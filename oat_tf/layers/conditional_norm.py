"""The normalization unit that follows every convolution: λ-routed batch norm, FiLM, channel gate."""

import keras
from keras import ops

from oat_tf.layers.channel_gate import LambdaChannelGate
from oat_tf.layers.dual_batch_norm import DualBatchNorm, per_sample_affine
from oat_tf.layers.film import FiLM


@keras.saving.register_keras_serializable(package="oat_tf")
class ConditionalNorm(keras.layers.Layer):
    """h = FiLM(DualBatchNorm(x, adversarial), code) · g(λ), or the batch norm alone with `film=False`.

    Inputs: x (B, ..., C_α), the λ code (B, D) (unused without FiLM), the per-sample
    adversarial flags (B,) (unused with `dual=False`) and λ (B,) (used only with a
    `private_share`). Output: the shape of x. `film_form` is the FiLM layer's `form` (`reference` or
    `identity`); `private_share` > 0 adds a `LambdaChannelGate` g(λ) that keeps that share of the
    channels for the clean end and as many for the robust end.

    With `tabulated=True` (the export form, `oat_tf.folding.tabulate_network`) the unit holds no
    weights: the network computes every unit's per-sample affine from its λ tables once per call and
    passes the list of (scale, shift) pairs, shaped (B, 1, 1, C_α), as `affines`; this unit reads
    entry `slot`, which the network assigns.
    """

    def __init__(self, channels, widths=(1.0,), dual=True, film=True, synchronized=False, film_form="reference",
                 private_share=0.0, tabulated=False, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.widths = tuple(widths)
        self.dual = bool(dual)
        self.film = bool(film)
        self.synchronized = bool(synchronized)
        self.film_form = film_form
        self.private_share = float(private_share)
        self.tabulated = bool(tabulated)
        self.slot = None
        if self.tabulated and self.private_share:
            raise ValueError("a tabulated norm has no channel gate: its affine is a table of λ alone.")
        self.norm = None if tabulated else DualBatchNorm(channels, widths, dual=dual, synchronized=synchronized,
                                                         name="bn")
        self.modulation = FiLM(channels, widths, form=film_form, name="film") if film and not tabulated else None
        self.gate = LambdaChannelGate(channels, private_share, widths, name="gate") if private_share else None

    def build(self, inputs_shape, code_shape=None, adversarial_shape=None):
        # The inference path calls the sublayers' methods directly, so build them here.
        if self.norm is not None:
            self.norm.build(inputs_shape)
        if self.modulation is not None:
            self.modulation.build(inputs_shape, code_shape)

    def call(self, inputs, code=None, adversarial=None, width=1.0, training=False, lam=None, affines=None):
        if self.tabulated:
            if training:
                raise ValueError("a tabulated network is an export form; train the network it was made from.")
            scale, shift = affines[self.slot]
            return inputs * scale + shift
        if training:
            h = self.norm(inputs, adversarial, width=width, training=True)
            h = h if self.modulation is None else self.modulation(h, code, width=width)
            if self.gate is None:
                return h
            return h * ops.reshape(self.gate(lam, width=width), (-1,) + (1,) * (len(h.shape) - 2) + (h.shape[-1],))
        # Inference: BN, FiLM and the gate fold into one per-sample affine, g·(γ·(s·x + t) + β) =
        # (gγs)·x + g·(γt + β), so the λ-conditioned network costs one multiply-add per activation.
        scale, shift = self.norm.inference_affine(adversarial, width=width)
        if self.modulation is not None:
            gamma, beta = self.modulation.modulation(code, width)
            scale, shift = gamma * scale, gamma * shift + beta
        if self.gate is not None:
            gate = self.gate(lam, width=width)
            scale, shift = gate * scale, gate * shift
        return per_sample_affine(inputs, scale, shift)

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            channels=self.channels,
            widths=list(self.widths),
            dual=self.dual,
            film=self.film,
            synchronized=self.synchronized,
            film_form=self.film_form,
            private_share=self.private_share,
            tabulated=self.tabulated,
        )
        return config
