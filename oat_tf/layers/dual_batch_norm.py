"""Batch normalization with λ-routed clean/adversarial statistics and one set per width."""

import keras
import tensorflow as tf
from keras import ops

from oat_tf.layers.slimming import channels_at, validate_widths, width_index


def per_sample_affine(x, scale, shift):
    """x · scale + shift for x of shape (B, ..., C) and scale, shift of shape (B, C) or (1, C), in scale's dtype."""
    x = ops.cast(x, scale.dtype)
    shape = (-1,) + (1,) * (len(x.shape) - 2) + (x.shape[-1],)
    return x * ops.reshape(scale, shape) + ops.reshape(shift, shape)


@keras.saving.register_keras_serializable(package="oat_tf")
class DualBatchNorm(keras.layers.Layer):
    """Batch norm whose statistics and affine parameters depend on the sample's route and the width.

    With `dual=True` there are two BNs: BN_c normalizes the samples whose
    `adversarial` weight w is 0 (λ = 0) and BN_a those whose weight is 1, per
    sample inside one mixed batch; in training each group's statistics come from
    that group alone (w > 0: BN_a's), and an empty group uses its moving statistics. A weight between
    0 and 1 blends the two normalizations, (1 − w)·BN_c(x) + w·BN_a(x), which at
    inference is one affine map with interpolated scale and shift. With
    `dual=False` it is one plain BN (the "OAT with normal BN" ablation).
    Every width in `widths` has its own independent set (switchable BN), over the
    first C_α = ⌊α·C⌋ channels. Input (B, ..., C_α), output the same shape.

    Moving statistics follow PyTorch: momentum 0.1 on the new value and the
    unbiased batch variance. With `synchronized=True` the batch moments are
    summed over all replicas of a `tf.distribute` strategy, so every replica
    normalizes with, and stores, the same statistics.
    """

    def __init__(
        self, channels, widths=(1.0,), dual=True, momentum=0.1, epsilon=1e-5, synchronized=False, **kwargs
    ):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.widths = validate_widths(widths)
        self.dual = bool(dual)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.synchronized = bool(synchronized)

    @property
    def routes(self):
        return ("clean", "adversarial") if self.dual else ("shared",)

    def build(self, input_shape):
        # self.params[width_index][route_index] = (gamma, beta, moving_mean, moving_variance)
        self.params = []
        for width in self.widths:
            c = channels_at(width, self.channels)
            per_route = []
            for route in self.routes:
                prefix = f"{route}_w{width:g}"
                per_route.append(
                    tuple(
                        self.add_weight(
                            name=f"{prefix}_{name}",
                            shape=(c,),
                            initializer=init,
                            trainable=trainable,
                            aggregation="only_first_replica" if not trainable else "none",
                        )
                        for name, init, trainable in (
                            ("gamma", "ones", True),
                            ("beta", "zeros", True),
                            ("moving_mean", "zeros", False),
                            ("moving_variance", "ones", False),
                        )
                    )
                )
            self.params.append(per_route)

    def _moments(self, x, mask):
        """Mean, biased variance and count over the samples where mask == 1 (all reduction axes)."""
        axes = tuple(range(len(x.shape) - 1))
        mask = ops.reshape(mask, (-1,) + (1,) * (len(x.shape) - 1))
        per_sample = float(x.shape[1:-1].num_elements()) if len(x.shape) > 2 else 1.0
        count = ops.sum(mask) * per_sample
        total = ops.sum(x * mask, axis=axes)
        count, total = self._all_reduce(count), self._all_reduce(total)
        mean = total / ops.maximum(count, 1.0)
        squares = self._all_reduce(ops.sum(ops.square(x - mean) * mask, axis=axes))
        return mean, squares / ops.maximum(count, 1.0), count

    def _all_reduce(self, value):
        if not self.synchronized:
            return value
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return value
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

    def _affine(self, params, mean, variance):
        gamma, beta = params[0], params[1]
        scale = gamma * ops.rsqrt(variance + self.epsilon)
        return scale, beta - mean * scale

    def _update_moving(self, params, mean, variance, count):
        moving_mean, moving_variance = params[2], params[3]
        unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
        seen = count > 0  # an empty group leaves its statistics untouched
        m = self.momentum
        moving_mean.assign(ops.where(seen, (1 - m) * moving_mean + m * mean, moving_mean))
        moving_variance.assign(ops.where(seen, (1 - m) * moving_variance + m * unbiased, moving_variance))

    def _weight(self, adversarial):
        if adversarial is None:
            raise ValueError("a dual batch norm needs the per-sample `adversarial` flags or weights (λ > 0 → BN_a).")
        return ops.cast(ops.reshape(adversarial, (-1,)), self.variable_dtype)

    def _per_sample(self, affines, adversarial):
        """(scale, shift) of shape (B, C): with boolean flags each sample's route, with weights w the blend
        (1 − w)·BN_c + w·BN_a; (1, C) with one route."""
        if not self.dual:
            scale, shift = affines[0]
            return scale[None, :], shift[None, :]
        (clean_scale, clean_shift), (adv_scale, adv_shift) = affines
        flags = None if adversarial is None else ops.convert_to_tensor(adversarial)
        if flags is not None and keras.backend.standardize_dtype(flags.dtype) == "bool":
            # A select, not arithmetic: an int8 file then picks a route exactly instead of mixing two ranges.
            pick = ops.reshape(flags, (-1, 1))
            return ops.where(pick, adv_scale[None, :], clean_scale[None, :]), ops.where(
                pick, adv_shift[None, :], clean_shift[None, :])
        w = ops.reshape(self._weight(adversarial), (-1, 1))
        # (1 − w)·c + w·a, not c + w·(a − c): exact at w = 0 and w = 1.
        return ((1.0 - w) * clean_scale + w * adv_scale, (1.0 - w) * clean_shift + w * adv_shift)

    def inference_affine(self, adversarial=None, width=1.0):
        """The layer at inference as x · scale + shift, with scale and shift of shape (B, C_α)
        ((1, C_α) without routes): the folded moving statistics of each sample's route(s)."""
        per_route = self.params[width_index(self.widths, width)]
        affines = [self._affine(params, params[2], params[3]) for params in per_route]
        return self._per_sample(affines, adversarial)

    def call(self, inputs, adversarial=None, width=1.0, training=False):
        if not training:
            return per_sample_affine(inputs, *self.inference_affine(adversarial, width))
        # Statistics in the variables' dtype (float32 under mixed precision, as Keras's BatchNormalization).
        x = ops.cast(inputs, self.variable_dtype)
        if self.dual:
            routed = ops.cast(self._weight(adversarial) > 0, self.variable_dtype)
            masks = (1.0 - routed, routed)
        else:
            masks = (ops.ones((ops.shape(x)[0],), self.variable_dtype),)
        affines = []
        for params, mask in zip(self.params[width_index(self.widths, width)], masks):
            mean, variance, count = self._moments(x, mask)
            self._update_moving(params, mean, variance, count)
            # An empty group normalizes with its moving statistics: a sample blended between the
            # routes (0 < w < 1) needs both, also in a batch where no sample takes this route alone.
            seen = count > 0
            mean, variance = ops.where(seen, mean, params[2]), ops.where(seen, variance, params[3])
            affines.append(self._affine(params, mean, variance))
        return per_sample_affine(x, *self._per_sample(affines, adversarial))

    def compute_output_shape(self, input_shape, adversarial_shape=None):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            channels=self.channels,
            widths=list(self.widths),
            dual=self.dual,
            momentum=self.momentum,
            epsilon=self.epsilon,
            synchronized=self.synchronized,
        )
        return config
