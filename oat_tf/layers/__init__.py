"""Keras layers for λ-conditioned, width-slimmable networks."""

from oat_tf.layers.channel_gate import LambdaChannelGate
from oat_tf.layers.conditional_norm import ConditionalNorm
from oat_tf.layers.dual_batch_norm import DualBatchNorm
from oat_tf.layers.lambda_adapter import LambdaAdapter
from oat_tf.layers.film import FiLM
from oat_tf.layers.lambda_encoding import ENCODINGS, LambdaEncoding
from oat_tf.layers.lambda_table import LambdaTable
from oat_tf.layers.slimmable_conv2d import SlimmableConv2D
from oat_tf.layers.slimmable_dense import SlimmableDense
from oat_tf.layers.slimming import channels_at

__all__ = [
    "ConditionalNorm",
    "LambdaAdapter",
    "LambdaChannelGate",
    "DualBatchNorm",
    "ENCODINGS",
    "FiLM",
    "LambdaEncoding",
    "LambdaTable",
    "SlimmableConv2D",
    "SlimmableDense",
    "channels_at",
]
