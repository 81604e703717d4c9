"""One network definition for every variant: plain, slimmable, OAT (normal or dual BN) and OATS."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from oat_tf.lambdas import S1, validate_grid
from oat_tf.layers.conditional_norm import ConditionalNorm
from oat_tf.layers.film import FILM_FORMS, FILM_NEGATIVE_SLOPE
from oat_tf.layers.lambda_encoding import LambdaEncoding
from oat_tf.layers.lambda_table import LambdaTable
from oat_tf.layers.slimmable_conv2d import SlimmableConv2D
from oat_tf.layers.slimmable_dense import SlimmableDense
from oat_tf.layers.slimming import channels_at, validate_widths, width_index
from oat_tf.models.blocks import BLOCKS

NORM_ROUTINGS = ("switch", "blend")  # how λ picks between BN_c and BN_a


@keras.saving.register_keras_serializable(package="oat_tf")
class OATNetwork(keras.Model):
    """A residual network conditioned on λ and slimmable in width.

    Call convention (used by training, attacks and export alike)::

        logits = model({"image": x, "lam": lam}, width=0.5, training=False)

    `x` is (B, S, S, 3) RGB in [0, 1] (S = `image_size`), `lam` is (B,) or (B, 1)
    in [0, 1], `width` one of `model.widths` (default: the full width 1.0), and
    the result is (B, num_classes) logits. Models without λ conditioning also
    accept the bare image tensor.

    The variant is configuration: `widths` (several = slimmable, with a switchable
    norm per width), `dual_bn` (λ = 0 samples use BN_c, λ > 0 samples BN_a) and
    `film` (FiLM after every batch norm, driven by a `LambdaEncoding` of λ). The
    conditioning options: `film_form` (`reference`, the paper's FiLM; `identity`, FiLM
    centred at γ = 1, β = 0, so the network starts as the unconditioned one) and
    `shortcut_film` (FiLM also after the projection shortcuts' norms; the paper's ResNet
    has none there) and `private_share` (a share of every norm's channels private to the
    clean end, gated by 1 − λ, and as many to the robust end, gated by λ; 0: none) and
    `adapter_share` (a `LambdaAdapter` of rank ≈ share·C per end on every 3×3 convolution
    of the blocks; 0: none) and `norm_routing` (`switch`, the paper's: every λ > 0 takes
    BN_a; `blend`: λ weighs the two, (1 − λ)·BN_c + λ·BN_a, the same at λ = 0 and 1 and an
    interpolation of the two norms between them). `block`, `stem_channels` and `stages`
    ((channels, blocks, stride) per stage) describe the architecture.

    `norm_table_knots` (one knot list per width, or None) makes the export form that
    `oat_tf.folding.tabulate_network` fills: every norm's per-sample affine, which depends on λ
    alone, is computed once at the top of the network from two `LambdaTable`s, every FiLM's MLP output
    at the knots (`film_table`) and every batch norm's folded (scale, shift) per route
    (`route_table`), so each norm costs a multiply and an add. It has no encoding, FiLM or batch-norm
    weights and cannot train; the convolutions that a norm follows have a bias, so that they can hold
    the batch norms' statistics. `table_storage` is the two tables' `LambdaTable` storage.

    `fake_quantize` (quantization-aware training) rounds every convolution's input and kernel to int8
    in training calls, as the full-int8 file does; inference is float. The classifier stays float, as
    in that file (`oat_tf.export.INT8_FLOAT_OPS`).
    """

    def __init__(
        self,
        block="basic",
        stem_channels=16,
        stages=((16, 3, 1), (32, 3, 2), (64, 3, 2)),
        num_classes=10,
        image_size=32,
        widths=(1.0,),
        dual_bn=False,
        film=False,
        encoding="orthogonal",
        encoding_dim=128,
        lam_grid=S1,
        encoding_seed=0,
        synchronized_bn=False,
        film_form="reference",
        shortcut_film=True,
        private_share=0.0,
        adapter_share=0.0,
        norm_routing="switch",
        norm_table_knots=None,
        table_storage="float32",
        fake_quantize=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {list(BLOCKS)}.")
        if film_form not in FILM_FORMS:
            raise ValueError(f"unknown FiLM form {film_form!r}; choose one of {list(FILM_FORMS)}.")
        if norm_routing not in NORM_ROUTINGS:
            raise ValueError(f"unknown norm routing {norm_routing!r}; choose one of {list(NORM_ROUTINGS)}.")
        self.norm_routing = norm_routing
        self.block = block
        self.stem_channels = int(stem_channels)
        self.stages = tuple((int(c), int(n), int(s)) for c, n, s in stages)
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.widths = validate_widths(widths)
        self.dual_bn, self.film = bool(dual_bn), bool(film)
        self.encoding_kind, self.encoding_dim, self.encoding_seed = encoding, int(encoding_dim), int(encoding_seed)
        self.lam_grid = validate_grid(lam_grid)
        self.synchronized_bn = bool(synchronized_bn)
        self.film_form, self.shortcut_film = film_form, bool(shortcut_film)
        self.private_share = float(private_share)
        if not 0.0 <= self.private_share <= 0.5:
            raise ValueError(f"private_share must lie in [0, 0.5], got {private_share}.")
        self.adapter_share = float(adapter_share)
        if not 0.0 <= self.adapter_share <= 1.0:
            raise ValueError(f"adapter_share must lie in [0, 1], got {adapter_share}.")
        self.norm_table_knots = None if norm_table_knots is None else [[float(t) for t in k] for k in norm_table_knots]
        self.table_storage = table_storage
        self.fake_quantize = bool(fake_quantize)
        tabulated = self.norm_table_knots is not None
        if tabulated and (self.private_share or self.adapter_share):
            raise ValueError("only norms whose affine depends on λ alone can be tabulated: no private_share or "
                             "adapter_share.")

        norm = dict(widths=self.widths, dual=self.dual_bn, film=self.film, synchronized=self.synchronized_bn,
                    film_form=film_form, private_share=self.private_share, tabulated=tabulated)
        preact = block == "preact"
        self.encoding = (
            LambdaEncoding(encoding, encoding_dim, self.lam_grid, encoding_seed, name="lam_encoding")
            if self.film and not tabulated
            else None
        )
        self.stem = SlimmableConv2D(self.stem_channels, 3, 1, self.widths, use_bias=tabulated and not preact,
                                    fake_quantize=self.fake_quantize, name="stem")
        self.stem_norm = None if preact else ConditionalNorm(self.stem_channels, name="stem_norm", **norm)
        self.blocks = []
        channels = self.stem_channels
        for i, (out_channels, count, stride) in enumerate(self.stages):
            for j in range(count):
                self.blocks.append(
                    BLOCKS[block](channels, out_channels, stride if j == 0 else 1, norm, self.shortcut_film,
                                  self.adapter_share, self.fake_quantize, name=f"stage{i + 1}_block{j + 1}")
                )
                channels = out_channels
        self.final_norm = ConditionalNorm(channels, name="final_norm", **norm) if preact else None
        self.classifier = SlimmableDense(self.num_classes, self.widths, name="classifier")
        self.film_table = self.route_table = None
        if tabulated:
            norms = self.conditional_norms()
            for slot, norm_layer in enumerate(norms):
                norm_layer.slot = slot
            # Per width: [γ of every norm | β of every norm], and [scale of every norm | shift of every norm].
            dims = [2 * sum(channels_at(w, n.channels) for n in norms) for w in self.widths]
            self.film_table = LambdaTable(self.norm_table_knots, dims, self.widths, table_storage, name="film_table")
            self.route_table = LambdaTable([[0.0, 1.0]] * len(self.widths), dims, self.widths, table_storage,
                                           name="route_table")
        self.build()

    @property
    def conditioned(self):
        """Whether the output depends on λ (FiLM, dual BN, private channels or adapters)."""
        return self.film or self.dual_bn or self.private_share > 0 or self.adapter_share > 0

    def conditional_norms(self):
        """Every `ConditionalNorm` of the network, in a fixed order (a tabulated network's slots)."""
        return [layer for layer in self._flatten_layers() if isinstance(layer, ConditionalNorm)]

    def normalized_convolutions(self):
        """The (convolution, norm) pairs whose norm takes the convolution's output as it is."""
        stem = [(self.stem, self.stem_norm)] if self.stem_norm is not None else []
        return stem + [pair for block in self.blocks for pair in block.normalized_convolutions()]

    def _tabulated_affines(self, lam, width):
        """Each norm's (scale, shift), shapes (B, 1, 1, C_α), from one lookup in each λ table."""
        film = self.film_table(lam, width=width)
        if self.film_form == "reference":
            film = ops.leaky_relu(film, FILM_NEGATIVE_SLOPE)
        gamma, beta = ops.split(film, 2, axis=-1)
        route_scale, route_shift = ops.split(self.route_table(lam, width=width), 2, axis=-1)
        sizes = np.cumsum([channels_at(width, n.channels) for n in self.conditional_norms()])[:-1].tolist()
        scale, shift = (ops.split(ops.reshape(v, (-1, 1, 1, v.shape[-1])), sizes, axis=-1)
                        for v in (gamma * route_scale, gamma * route_shift + beta))
        return list(zip(scale, shift))

    def build(self, input_shape=None):
        if self.built:
            return
        # Full width first: the shared kernels take their shapes from the full-width inputs.
        dummy = {"image": np.zeros((1, self.image_size, self.image_size, 3), "float32"), "lam": np.zeros((1,), "float32")}
        for width in reversed(self.widths):
            self.call(dummy, width=width, training=False)
        self.built = True

    def prepare_inputs(self, inputs):
        """Returns (image, lam) as tensors of the compute dtype, shapes (B, S, S, 3) and (B,), or a ValueError.

        Shapes are always checked; λ values (NaN, outside [0, 1]) and dynamic batch
        sizes are checked when running eagerly (inside a `tf.function` they cannot be read).
        """
        if isinstance(inputs, dict):
            unknown = set(inputs) - {"image", "lam"}
            if unknown or "image" not in inputs:
                raise ValueError(f"inputs must be a dict with keys 'image' and 'lam', got keys {sorted(inputs)}.")
            image, lam = inputs["image"], inputs.get("lam")
        else:
            image, lam = inputs, None
        image = ops.cast(ops.convert_to_tensor(image), self.compute_dtype)
        expected = (self.image_size, self.image_size, 3)
        if len(image.shape) != 4 or tuple(image.shape[1:]) != expected:
            raise ValueError(f"image must have shape (batch, {', '.join(map(str, expected))}), got {tuple(image.shape)}.")
        if lam is None:
            if self.conditioned:
                raise ValueError("this model is conditioned on λ: pass {'image': x, 'lam': lam}.")
            return image, ops.zeros((ops.shape(image)[0],), self.compute_dtype)
        lam = ops.cast(ops.convert_to_tensor(lam), self.compute_dtype)
        if len(lam.shape) == 2 and lam.shape[1] == 1:
            lam = ops.reshape(lam, (-1,))
        if len(lam.shape) != 1:
            raise ValueError(f"lam must have shape (batch,) or (batch, 1), got {tuple(lam.shape)}.")
        if None not in (lam.shape[0], image.shape[0]) and lam.shape[0] != image.shape[0]:
            raise ValueError(f"lam has batch size {lam.shape[0]} but image has {image.shape[0]}.")
        if tf.executing_eagerly():
            values = np.asarray(lam)
            if values.shape[0] != int(ops.shape(image)[0]):
                raise ValueError(f"lam has batch size {values.shape[0]} but image has {int(ops.shape(image)[0])}.")
            if np.isnan(values).any():
                raise ValueError("lam contains NaN; every λ must be a number in [0, 1].")
            if values.size and (values.min() < 0.0 or values.max() > 1.0):
                raise ValueError(f"lam must lie in [0, 1], got values in [{values.min()}, {values.max()}].")
        return image, lam

    def call(self, inputs, width=None, training=False):
        width = self.widths[-1] if width is None else self.widths[width_index(self.widths, width)]
        image, lam = self.prepare_inputs(inputs)
        tabulated = self.film_table is not None
        cond = dict(
            code=self.encoding(lam) if self.encoding is not None else None,
            adversarial=(lam if self.norm_routing == "blend" else lam > 0) if self.dual_bn and not tabulated else None,
            width=width,
            training=training,
            lam=lam,
            affines=self._tabulated_affines(lam, width) if tabulated else None,
        )
        x = self.stem(image, width=width)
        if self.stem_norm is not None:
            x = ops.relu(self.stem_norm(x, **cond))
        for block in self.blocks:
            x = block(x, **cond)
        if self.final_norm is not None:
            x = ops.relu(self.final_norm(x, **cond))
        x = ops.mean(x, axis=(1, 2))
        return self.classifier(x, width=width)

    @classmethod
    def from_config(cls, config):
        # Files saved by commits 743ba95 to 0c88c7a^ name the FiLM MLP, now the only trainable form,
        # `film_hidden=True`; their `film_hidden=False` export form became the λ tables.
        config = dict(config)
        if not config.pop("film_hidden", True):
            raise ValueError("this file holds FiLM without hidden layer, an export form replaced by λ tables; "
                             "export the trained network again (oat_tf.folding.compact_network).")
        return super().from_config(config)

    def get_config(self):
        config = super().get_config()
        config.update(
            block=self.block,
            stem_channels=self.stem_channels,
            stages=[list(s) for s in self.stages],
            num_classes=self.num_classes,
            image_size=self.image_size,
            widths=list(self.widths),
            dual_bn=self.dual_bn,
            film=self.film,
            encoding=self.encoding_kind,
            encoding_dim=self.encoding_dim,
            lam_grid=list(self.lam_grid),
            encoding_seed=self.encoding_seed,
            synchronized_bn=self.synchronized_bn,
            film_form=self.film_form,
            shortcut_film=self.shortcut_film,
            private_share=self.private_share,
            adapter_share=self.adapter_share,
            norm_routing=self.norm_routing,
            norm_table_knots=self.norm_table_knots,
            table_storage=self.table_storage,
            fake_quantize=self.fake_quantize,
        )
        return config
