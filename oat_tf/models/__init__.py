"""Networks: residual blocks, the configurable OAT network and the model zoo."""

from oat_tf.models.blocks import BasicBlock, PreActBlock
from oat_tf.models.network import OATNetwork
from oat_tf.models.zoo import ARCHITECTURES, SLIMMABLE_WIDTHS, VARIANTS, build_model

__all__ = ["ARCHITECTURES", "BasicBlock", "OATNetwork", "PreActBlock", "SLIMMABLE_WIDTHS", "VARIANTS", "build_model"]
