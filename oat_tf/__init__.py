"""oat-tf: Once-for-All Adversarial Training (OAT) and OATS in Keras 3 / TensorFlow."""

from oat_tf.lambdas import S1, S2, S3
from oat_tf.models import ARCHITECTURES, VARIANTS, OATNetwork, build_model
from oat_tf.picker import pick

__all__ = ["ARCHITECTURES", "OATNetwork", "S1", "S2", "S3", "VARIANTS", "build_model", "pick"]
__version__ = "0.1.0"
