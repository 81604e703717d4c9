"""λ sets from the paper and validation of λ grids."""

import math

# Training set of the paper (Sec. 4) and its denser variant.
S1 = (0.0, 0.1, 0.2, 0.3, 0.4, 1.0)
S2 = (0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)
# λ values never seen in training, used to test generalization (Fig. 5).
S3 = (0.15, 0.25, 0.35, 0.5, 0.7, 0.9)


def validate_grid(grid, name="lam_grid"):
    """Returns `grid` as a tuple of floats after checking it is a sorted set in [0, 1]."""
    values = tuple(float(v) for v in grid)
    if not values:
        raise ValueError(f"{name} must hold at least one λ value, got an empty list.")
    for v in values:
        if math.isnan(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} values must lie in [0, 1], got {v} in {list(values)}.")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{name} must be strictly increasing, got {list(values)}.")
    return values
