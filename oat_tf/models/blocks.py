"""Residual blocks built from slimmable convolutions and conditional norms."""

import keras
from keras import ops

from oat_tf.layers.conditional_norm import ConditionalNorm
from oat_tf.layers.lambda_adapter import LambdaAdapter
from oat_tf.layers.slimmable_conv2d import SlimmableConv2D


class _ResidualBlock(keras.layers.Layer):
    """Shared constructor and config of the residual blocks.

    `norm` holds the ConditionalNorm options (widths, dual, film, synchronized, film_form, private_share);
    `shortcut_film` says whether FiLM also follows the norm of a projection shortcut (basic
    blocks only: a pre-activation shortcut has no norm of its own); `adapter_share` > 0 adds a
    `LambdaAdapter` of rank max(1, round(share·C_out)) per end to each 3×3 convolution;
    `fake_quantize` rounds the convolutions' inputs and kernels to int8 in training (`SlimmableConv2D`;
    the adapters stay float). Every block is
    called as block(x, code, adversarial, width=α, training=..., lam=λ, affines=...) (`affines`: the
    tabulated network's per-norm (scale, shift) list, see `ConditionalNorm`) with x of shape
    (B, H, W, C_in,α) and returns (B, H/stride, W/stride, C_out,α).

    `NORMALIZED_CONVOLUTIONS` names the (convolution, norm) pairs whose norm takes the convolution's
    output as it is; in a tabulated network those convolutions have a bias, to hold the batch norm's
    statistics (`oat_tf.folding.tabulate_network`).
    """

    NORMALIZED_CONVOLUTIONS = ()

    def __init__(self, in_channels, out_channels, stride=1, norm=None, shortcut_film=True, adapter_share=0.0,
                 fake_quantize=False, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels, self.stride = int(in_channels), int(out_channels), int(stride)
        self.norm_options = dict(norm or {})
        self.shortcut_film = bool(shortcut_film)
        self.adapter_share = float(adapter_share)
        self.fake_quantize = bool(fake_quantize)
        widths = self.norm_options.get("widths", (1.0,))
        biased = {conv for conv, _ in self.NORMALIZED_CONVOLUTIONS} if self.norm_options.get("tabulated") else set()
        conv = dict(widths=widths, fake_quantize=self.fake_quantize)
        self.conv1 = SlimmableConv2D(out_channels, 3, stride, use_bias="conv1" in biased, name="conv1", **conv)
        self.conv2 = SlimmableConv2D(out_channels, 3, 1, use_bias="conv2" in biased, name="conv2", **conv)
        rank = max(1, round(self.adapter_share * out_channels))
        self.adapters = [LambdaAdapter(out_channels, 3, s, rank, widths, name=f"adapter{i + 1}")
                         for i, s in enumerate((stride, 1))] if self.adapter_share else None
        self.projects = stride != 1 or in_channels != out_channels
        self.shortcut = (SlimmableConv2D(out_channels, 1, stride, use_bias="shortcut" in biased, name="shortcut", **conv)
                         if self.projects else None)

    def normalized_convolutions(self):
        """The block's (convolution, norm) pairs of `NORMALIZED_CONVOLUTIONS` that exist."""
        pairs = [(getattr(self, conv), getattr(self, norm)) for conv, norm in self.NORMALIZED_CONVOLUTIONS]
        return [(conv, norm) for conv, norm in pairs if conv is not None]

    def _norm(self, channels, name, **overrides):
        return ConditionalNorm(channels, name=name, **dict(self.norm_options, **overrides))

    def _conv(self, index, x, width, lam):
        """The block's `index`-th 3×3 convolution, plus its λ adapter when there is one."""
        y = (self.conv1, self.conv2)[index](x, width=width)
        return y if self.adapters is None else y + self.adapters[index](x, lam, width=width)

    def get_config(self):
        config = super().get_config()
        config.update(
            in_channels=self.in_channels, out_channels=self.out_channels, stride=self.stride, norm=self.norm_options,
            shortcut_film=self.shortcut_film, adapter_share=self.adapter_share, fake_quantize=self.fake_quantize,
        )
        return config


@keras.saving.register_keras_serializable(package="oat_tf")
class BasicBlock(_ResidualBlock):
    """Post-activation ResNet block: relu(N2(conv2(relu(N1(conv1(x))))) + shortcut(x)).

    The projection shortcut (1×1 conv + norm, FiLM after it only with `shortcut_film`) is used
    when the stride or channel count changes.
    """

    NORMALIZED_CONVOLUTIONS = (("conv1", "norm1"), ("conv2", "norm2"), ("shortcut", "shortcut_norm"))

    def __init__(self, in_channels, out_channels, stride=1, norm=None, shortcut_film=True, adapter_share=0.0,
                 fake_quantize=False, **kwargs):
        super().__init__(in_channels, out_channels, stride, norm, shortcut_film, adapter_share, fake_quantize,
                         **kwargs)
        self.norm1 = self._norm(out_channels, "norm1")
        self.norm2 = self._norm(out_channels, "norm2")
        film = self.norm_options.get("film", True) and self.shortcut_film
        self.shortcut_norm = self._norm(out_channels, "shortcut_norm", film=film) if self.projects else None

    def call(self, x, code=None, adversarial=None, width=1.0, training=False, lam=None, affines=None):
        cond = dict(code=code, adversarial=adversarial, width=width, training=training, lam=lam, affines=affines)
        h = ops.relu(self.norm1(self._conv(0, x, width, lam), **cond))
        h = self.norm2(self._conv(1, h, width, lam), **cond)
        skip = self.shortcut_norm(self.shortcut(x, width=width), **cond) if self.projects else x
        return ops.relu(h + skip)


@keras.saving.register_keras_serializable(package="oat_tf")
class PreActBlock(_ResidualBlock):
    """Pre-activation block (PreAct ResNet, Wide ResNet): conv2(relu(N2(conv1(a)))) + shortcut, a = relu(N1(x)).

    The projection shortcut (1×1 conv on a) is used when the stride or channel count changes.
    """

    NORMALIZED_CONVOLUTIONS = (("conv1", "norm2"),)

    def __init__(self, in_channels, out_channels, stride=1, norm=None, shortcut_film=True, adapter_share=0.0,
                 fake_quantize=False, **kwargs):
        super().__init__(in_channels, out_channels, stride, norm, shortcut_film, adapter_share, fake_quantize,
                         **kwargs)
        self.norm1 = self._norm(in_channels, "norm1")
        self.norm2 = self._norm(out_channels, "norm2")

    def call(self, x, code=None, adversarial=None, width=1.0, training=False, lam=None, affines=None):
        cond = dict(code=code, adversarial=adversarial, width=width, training=training, lam=lam, affines=affines)
        a = ops.relu(self.norm1(x, **cond))
        skip = self.shortcut(a, width=width) if self.projects else x
        h = ops.relu(self.norm2(self._conv(0, a, width, lam), **cond))
        return self._conv(1, h, width, lam) + skip


BLOCKS = {"basic": BasicBlock, "preact": PreActBlock}
