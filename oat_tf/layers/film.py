"""Feature-wise linear modulation conditioned on the λ code, slimmable in width."""

import keras
from keras import ops

from oat_tf.layers.slimming import channels_at, validate_widths, width_index

FILM_FORMS = ("reference", "identity")
FILM_NEGATIVE_SLOPE = 0.01  # LeakyReLU's, as in the reference implementation


def _torch_linear_init():
    # PyTorch nn.Linear's default, as in the reference implementation: U(±1/√fan_in).
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


@keras.saving.register_keras_serializable(package="oat_tf")
class FiLM(keras.layers.Layer):
    """out = γ(code) · h + β(code), per sample and channel.

    The map from the code is the paper's MLP, Dense(2C) → LeakyReLU → Dense(2C), split into the
    γ and β parts, whose weights every width shares. `form` says how the output becomes γ, β:

    - `reference` (the OAT paper's code): γ, β = LeakyReLU(MLP(code)), every layer with
      PyTorch's default `Linear` initialization, so γ starts near 0.03 (half the channels
      near 0) and the modulated features start almost switched off.
    - `identity`: γ = 1 + Δγ, β = Δβ with (Δγ, Δβ) = MLP(code), no output activation and the
      last layer zero-initialized, so the layer starts as the identity for every λ and the
      conditioned network starts as the unconditioned one.

    Inputs: features h of shape (B, ..., C_α) and codes of shape (B, D); output has the
    shape of h. At width α the MLP uses the first 2·C_α hidden units and the first C_α
    outputs of each of γ and β (C_α = ⌊α·C⌋).
    """

    def __init__(self, channels, widths=(1.0,), negative_slope=FILM_NEGATIVE_SLOPE, form="reference", **kwargs):
        super().__init__(**kwargs)
        if form not in FILM_FORMS:
            raise ValueError(f"unknown FiLM form {form!r}; choose one of {list(FILM_FORMS)}.")
        self.channels = int(channels)
        self.widths = validate_widths(widths)
        self.negative_slope = float(negative_slope)
        self.form = form

    def build(self, features_shape=None, code_shape=None):
        code_dim = int(code_shape[-1])
        hidden = 2 * self.channels
        zero_output = self.form == "identity"

        def dense(name, fan_in, units, zero=False):
            bound = fan_in**-0.5
            kernel = self.add_weight(name=f"{name}_kernel", shape=(fan_in, units),
                                     initializer="zeros" if zero else _torch_linear_init())
            bias = self.add_weight(name=f"{name}_bias", shape=(units,),
                                   initializer="zeros" if zero else keras.initializers.RandomUniform(-bound, bound))
            return kernel, bias

        self.hidden_kernel, self.hidden_bias = dense("hidden", code_dim, hidden)
        self.gamma_kernel, self.gamma_bias = dense("gamma", hidden, self.channels, zero_output)
        self.beta_kernel, self.beta_bias = dense("beta", hidden, self.channels, zero_output)

    def modulation(self, code, width=1.0):
        """γ and β of shape (B, C_α) for codes of shape (B, D)."""
        width_index(self.widths, width)  # a clear error for a width this layer does not have
        c = channels_at(width, self.channels)
        leaky = lambda t: ops.leaky_relu(t, self.negative_slope)  # noqa: E731
        hidden = leaky(ops.matmul(code, self.hidden_kernel[:, : 2 * c]) + self.hidden_bias[: 2 * c])
        gamma = ops.matmul(hidden, self.gamma_kernel[: 2 * c, :c]) + self.gamma_bias[:c]
        beta = ops.matmul(hidden, self.beta_kernel[: 2 * c, :c]) + self.beta_bias[:c]
        if self.form == "identity":
            return 1.0 + gamma, beta
        return leaky(gamma), leaky(beta)

    def call(self, features, code, width=1.0):
        gamma, beta = self.modulation(code, width)
        shape = (-1,) + (1,) * (len(features.shape) - 2) + (gamma.shape[-1],)
        return features * ops.reshape(gamma, shape) + ops.reshape(beta, shape)

    def compute_output_shape(self, features_shape, code_shape=None):
        return features_shape

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, widths=list(self.widths), negative_slope=self.negative_slope,
                      form=self.form)
        return config
