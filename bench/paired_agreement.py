"""Paired comparison of full-int8 agreement between two sets of `bench/int8_routes.py` JSON files, as JSON.

    python bench/paired_agreement.py --before=a_w0.5.json,a_w1.json --after=b_w0.5.json,b_w1.json \
        --route=converter --out results/bench/comparison.json

Files pair up in order and must hold the same run, width, split and images; with `--across_runs`
they may come from two runs whose splits hold the same images (the same seed and validation size,
as a fine-tune and its control started from one run), paired by image index. Per (width, λ) cell the
agreement before and after and their difference; per width and pooled over every cell the mean
difference with the standard error of the paired per-image indicators (cells treated as
independent) and, pooled, also the standard error with each image's cells summed (an image repeats
across widths and λ, so its cells are correlated). Where both files record the float file's
`disagreement_margins`, each cell also has the median top-2 logit margin over all images before and
after (how confident the two float models are on these images).
"""

import json

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("before", None, "int8_routes JSON files of the reference files, one per width.", required=True)
flags.DEFINE_list("after", None, "int8_routes JSON files of the candidate, in the same order.", required=True)
flags.DEFINE_string("route", "converter", "Route whose agreement is compared.")
flags.DEFINE_bool("across_runs", False, "Compare two runs' files (the same images: the runs share seed and "
                  "validation size); by default both sets must come from one run.")
flags.DEFINE_string("out", None, "Also write the JSON here (atomically).")

_SAME = ("source_run", "width", "split", "examples", "data")


def _read(path):
    with open(path) as f:
        return json.load(f)


def _route_row(result, route):
    """The row of `route` in one int8_routes result."""
    rows = [row for row in result["results"] if row["route"] == route]
    if not rows:
        raise app.UsageError(f"route {route!r} is not in {result['command']!r}.")
    return rows[0]


def _agrees(row, examples):
    """{λ: per-image bool agreement} of one int8_routes result row."""
    agrees = {}
    for lam, wrong in row["disagreeing_images"].items():
        agrees[lam] = np.ones(examples, bool)
        agrees[lam][wrong] = False
    return agrees


def _median_margins(row):
    """{λ: the float file's median top-2 margin over all images}, or {} if the row predates them."""
    return {lam: summary["median_margin"] for lam, summary in row.get("disagreement_margins", {}).items()}


def _mean_and_se(differences):
    return dict(difference_pp=round(100 * float(differences.mean()), 3),
                paired_se_pp=round(100 * float(differences.std(ddof=1) / np.sqrt(len(differences))), 3))


def main(argv):
    del argv
    from oat_tf.provenance import provenance, write_json

    if len(FLAGS.before) != len(FLAGS.after):
        raise app.UsageError("--before and --after need the same number of files.")
    cells, widths, pooled, per_image = [], [], [], 0.0
    for before_path, after_path in zip(FLAGS.before, FLAGS.after):
        before, after = (_read(path) for path in (before_path, after_path))
        same = _SAME[1:] if FLAGS.across_runs else _SAME
        differing = [key for key in same if before.get(key) != after.get(key)]
        if differing:
            raise app.UsageError(f"{before_path} and {after_path} differ in {differing}.")
        old_row, new_row = _route_row(before, FLAGS.route), _route_row(after, FLAGS.route)
        old, new = _agrees(old_row, before["examples"]), _agrees(new_row, after["examples"])
        old_margins, new_margins = _median_margins(old_row), _median_margins(new_row)
        if old.keys() != new.keys():
            raise app.UsageError(f"{before_path} and {after_path} measure different λ.")
        width_differences = []
        for lam in old:
            difference = new[lam].astype(float) - old[lam].astype(float)
            width_differences.append(difference)
            per_image = per_image + difference
            cell = dict(width=before["width"], lam=float(lam), before=round(float(old[lam].mean()), 4),
                        after=round(float(new[lam].mean()), 4), **_mean_and_se(difference))
            if lam in old_margins and lam in new_margins:
                cell.update(median_margin_before=old_margins[lam], median_margin_after=new_margins[lam])
            cells.append(cell)
        widths.append(dict(width=before["width"], **_mean_and_se(np.concatenate(width_differences))))
        pooled.extend(width_differences)
    pooled = np.concatenate(pooled)
    summary = _mean_and_se(pooled)
    summary["image_clustered_se_pp"] = round(100 * float(np.std(per_image / len(cells), ddof=1) / np.sqrt(len(per_image))), 3)
    summary["z"] = round(summary["difference_pp"] / summary["paired_se_pp"], 2)
    result = provenance(benchmark="paired_agreement", route=FLAGS.route, before=FLAGS.before, after=FLAGS.after,
                        cells=cells, widths=widths, pooled=summary)
    print(json.dumps(dict(widths=widths, pooled=summary), indent=1))
    if FLAGS.out:
        write_json(FLAGS.out, result)


if __name__ == "__main__":
    app.run(main)
