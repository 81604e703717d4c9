"""The SA–RA trade-off as a table (rows λ, columns width) and the check that λ separates the two ends."""

import math


def _cell(row):
    return f"{100 * row['sa']:5.1f} / {100 * row['ra']:4.1f}"


def tradeoff_table(rows):
    """Markdown table of validation or evaluation rows (dicts with lambda, width, attack, sa, ra):
    one line per λ, one column per width, each cell "SA / RA" in %. One attack per table."""
    attacks = sorted({row["attack"] for row in rows})
    if len(attacks) != 1:
        raise ValueError(f"tradeoff_table takes the rows of one attack, got {attacks}.")
    widths = sorted({row["width"] for row in rows})
    cells = {(row["lambda"], row["width"]): _cell(row) for row in rows}
    lines = ["| λ | " + " | ".join(f"width {w:g}: SA / RA({attacks[0]}) %" for w in widths) + " |",
             "|---|" + "---|" * len(widths)]
    for lam in sorted({row["lambda"] for row in rows}):
        lines.append(f"| {lam:g} | " + " | ".join(cells.get((lam, w), "–") for w in widths) + " |")
    return "\n".join(lines)


def end_separation(rows, margin_pp=8.0):
    """Per width, how far λ = 0 and λ = 1 are apart: SA(0) − SA(1) and RA(1) − RA(0) in pp, their
    standard errors (unpaired binomial, an upper bound for the paired difference on the same images)
    and whether both exceed `margin_pp`. Rows need n_clean and n_robust."""
    by_key = {(row["lambda"], row["width"]): row for row in rows}
    result = []
    for width in sorted({row["width"] for row in rows}):
        clean, robust = by_key.get((0.0, width)), by_key.get((1.0, width))
        if clean is None or robust is None:
            raise ValueError(f"width {width:g} needs rows at λ = 0 and λ = 1.")
        sa_gap = 100 * (clean["sa"] - robust["sa"])
        ra_gap = 100 * (robust["ra"] - clean["ra"])
        result.append(dict(
            width=width, sa_gap_pp=round(sa_gap, 2), ra_gap_pp=round(ra_gap, 2),
            sa_gap_se_pp=round(_difference_se(clean["sa"], robust["sa"], clean["n_clean"], robust["n_clean"]), 2),
            ra_gap_se_pp=round(_difference_se(clean["ra"], robust["ra"], clean["n_robust"], robust["n_robust"]), 2),
            holds=bool(sa_gap >= margin_pp and ra_gap >= margin_pp),
        ))
    return result


def _difference_se(p, q, n, m):
    return 100 * math.sqrt(p * (1 - p) / n + q * (1 - q) / m)
