"""Channel arithmetic shared by the width-slimmable layers."""

import math


def channels_at(width, channels):
    """Number of leading channels a layer of `channels` uses at width factor `width`: ⌊width·channels⌋ (≥ 1)."""
    return max(1, int(math.floor(width * channels + 1e-6)))


def validate_widths(widths):
    """Returns the width factors as a sorted tuple; the largest must be 1.0 (the full network)."""
    values = tuple(sorted(float(w) for w in widths))
    if not values:
        raise ValueError("widths must hold at least one width factor, got an empty list.")
    if any(not 0.0 < w <= 1.0 for w in values):
        raise ValueError(f"width factors must lie in (0, 1], got {list(values)}.")
    if len(set(values)) != len(values):
        raise ValueError(f"width factors must be distinct, got {list(values)}.")
    if values[-1] != 1.0:
        raise ValueError(f"the largest width factor must be 1.0, got {list(values)}.")
    return values


def width_index(widths, width):
    """Position of `width` in `widths`, or a ValueError that lists the valid widths."""
    for i, w in enumerate(widths):
        if abs(w - float(width)) < 1e-9:
            return i
    raise ValueError(f"width {width} is not one of this model's widths {list(widths)}.")
