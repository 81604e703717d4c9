"""Pick the (width, λ, file) of an exported bundle that meets an accuracy or robustness target.

    python -m oat_tf.picker BUNDLE/manifest.json --min_sa=0.8
    python -m oat_tf.picker BUNDLE/manifest.json --min_ra=0.4 --formats=int8

This is the paper's "calibrate in situ" knob: the trade-off is measured once at export
(the manifest's SA/RA table) and chosen on the device by changing λ (and the width).
"""

import json
import math
import sys

from absl import app, flags


def _rows(manifest):
    if isinstance(manifest, str):
        with open(manifest) as f:
            manifest = json.load(f)
    rows = manifest.get("evaluation", {}).get("rows", [])
    if not rows:
        raise ValueError("the manifest holds no SA/RA table: export with evaluation on.")
    sizes = {entry["path"]: entry.get("size_bytes", 0) for entry in manifest.get("files", [])}
    return [dict(row, size_bytes=sizes.get(row["path"], 0)) for row in rows]


def pick(manifest, min_sa=None, min_ra=None, ra_weight=None, widths=None, formats=None):
    """The best row of the manifest's SA/RA table: {width, lambda, format, path, sa, ra, size_bytes}.

    Constraints: SA ≥ `min_sa`, RA ≥ `min_ra` (fractions in [0, 1]), and optionally only the
    given `widths` and `formats`. Objective: `ra_weight` w maximizes (1 − w)·SA + w·RA; without
    it, RA is maximized under `min_sa` alone, SA under `min_ra` alone, and SA + RA otherwise.
    Ties go to the smaller file, then the smaller width. `manifest`: a dict or a manifest.json path.
    Raises ValueError when no row meets the constraints, naming the best SA and RA on offer.
    """
    for name, value in (("min_sa", min_sa), ("min_ra", min_ra), ("ra_weight", ra_weight)):
        if value is not None and (math.isnan(value) or not 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must lie in [0, 1], got {value}.")
    if ra_weight is None:
        ra_weight = 1.0 if min_sa is not None and min_ra is None else 0.0 if min_ra is not None and min_sa is None else 0.5
    rows = [r for r in _rows(manifest)
            if (widths is None or r["width"] in [float(w) for w in widths]) and (formats is None or r["format"] in formats)]
    if not rows:
        raise ValueError(f"the manifest has no rows for widths {widths} and formats {formats}.")
    feasible = [r for r in rows if r["sa"] >= (min_sa or 0.0) and r["ra"] >= (min_ra or 0.0)]
    if not feasible:
        raise ValueError(f"no (width, λ, file) reaches SA ≥ {min_sa} and RA ≥ {min_ra}; the best on offer are "
                         f"SA {max(r['sa'] for r in rows):.3f} and RA {max(r['ra'] for r in rows):.3f}.")
    return max(feasible, key=lambda r: ((1 - ra_weight) * r["sa"] + ra_weight * r["ra"], -r["size_bytes"], -r["width"]))


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_float("min_sa", None, "Least standard accuracy (fraction).")
    flags.DEFINE_float("min_ra", None, "Least robust accuracy (fraction).")
    flags.DEFINE_float("ra_weight", None, "Maximize (1 − w)·SA + w·RA.")
    flags.DEFINE_list("widths", None, "Only these widths.")
    flags.DEFINE_list("formats", None, "Only these formats (saved_model, float32, float16, dynamic_int8, int8).")


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: python -m oat_tf.picker BUNDLE/manifest.json [--min_sa=… | --min_ra=… | --ra_weight=…]")
    try:
        choice = pick(argv[1], FLAGS.min_sa, FLAGS.min_ra, FLAGS.ra_weight, FLAGS.widths, FLAGS.formats)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")
    print(json.dumps(choice, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
