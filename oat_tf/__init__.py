"""oat-tf: Once-for-All Adversarial Training (OAT) and OATS in Keras 3 / TensorFlow.

The public names load on first use (PEP 562), so that `import oat_tf.<module>` of a module
that needs no TensorFlow (the picker, provenance, the allocator) does not import it.
"""

import importlib

# public name → the module that defines it
_EXPORTS = {
    "S1": "oat_tf.lambdas", "S2": "oat_tf.lambdas", "S3": "oat_tf.lambdas",
    "ARCHITECTURES": "oat_tf.models", "VARIANTS": "oat_tf.models", "OATNetwork": "oat_tf.models",
    "build_model": "oat_tf.models", "pick": "oat_tf.picker",
    "from_preset": "oat_tf.presets", "list_presets": "oat_tf.presets",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'oat_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
