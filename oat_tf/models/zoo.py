"""Builders by name for the paper's networks and small CPU-sized ones, in every variant."""

from oat_tf.models.network import OATNetwork

SLIMMABLE_WIDTHS = (0.5, 0.75, 1.0)

# name → (block, stem channels, stages as (channels, blocks, stride)).
ARCHITECTURES = {
    # CIFAR ResNets of He et al. 2016 (6n+2 layers); small enough to train on a CPU. ResNet-8 (n = 1)
    # has every kind of block (identity and projection shortcuts) and serves pipeline checks.
    "resnet8": ("basic", 16, ((16, 1, 1), (32, 1, 2), (64, 1, 2))),
    "resnet20": ("basic", 16, ((16, 3, 1), (32, 3, 2), (64, 3, 2))),
    "resnet32": ("basic", 16, ((16, 5, 1), (32, 5, 2), (64, 5, 2))),
    # ResNet-18/34 with a 3×3 stem for 32×32 inputs, as in the OAT reference code (CIFAR-10).
    "resnet18": ("basic", 64, ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2))),
    "resnet34": ("basic", 64, ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))),
    "preact_resnet18": ("preact", 64, ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2))),
    # Wide ResNets WRN-d-k, (d−4)/6 blocks per stage: WRN-16-8 (SVHN), WRN-40-2 (STL-10).
    "wrn16_8": ("preact", 16, ((128, 2, 1), (256, 2, 2), (512, 2, 2))),
    "wrn40_2": ("preact", 16, ((32, 6, 1), (64, 6, 2), (128, 6, 2))),
}

# variant → (widths, dual_bn, film).
VARIANTS = {
    "plain": ((1.0,), False, False),
    "slimmable": (SLIMMABLE_WIDTHS, False, False),
    "oat_bn": ((1.0,), False, True),
    "oat": ((1.0,), True, True),
    "oats": (SLIMMABLE_WIDTHS, True, True),
}


def build_model(name, variant="oat", num_classes=10, image_size=32, width_multiplier=1.0, widths=None, **options):
    """Builds zoo network `name` in `variant`.

    `width_multiplier` scales every channel count (e.g. 0.5 for a half-width
    ResNet-20 that trains quickly on a CPU); `widths` overrides the variant's
    width factors; further `options` go to `OATNetwork` (e.g. `encoding`,
    `lam_grid`, `synchronized_bn`).
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(ARCHITECTURES)}.")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}.")
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be positive, got {width_multiplier}.")
    block, stem, stages = ARCHITECTURES[name]
    scale = lambda c: max(1, int(round(c * width_multiplier)))  # noqa: E731
    variant_widths, dual_bn, film = VARIANTS[variant]
    return OATNetwork(
        block=block,
        stem_channels=scale(stem),
        stages=[(scale(c), n, s) for c, n, s in stages],
        num_classes=num_classes,
        image_size=image_size,
        widths=variant_widths if widths is None else widths,
        dual_bn=dual_bn,
        film=film,
        name=f"{name}_{variant}",
        **options,
    )
