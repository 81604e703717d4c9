"""Issue 13's goal for one OAT or OATS model against the dedicated models at its two ends.

Fixed before any ablation ran: λ = 0 SA at most `SA_END_PP` below the standard model's, λ = 1 RA
at most `RA_END_PP` below the PGD-AT (λ = 1) model's, and SA and RA spans over S1 each at least
`SPAN_SHARE` of the dedicated models' (their λ = 0 and λ = 1 ends). Added after the first ablation
rows: every λ inside (0, 1) within the ends' range, up to `BETWEEN_PP`.
"""

from oat_tf.reproduce.analysis import span

SA_END_PP = 3.0
RA_END_PP = 2.0
SPAN_SHARE = 0.7
BETWEEN_PP = 2.0


def check(standard, robust, points):
    """{criterion: pp by which `points` ({λ: (SA, RA)} in %) misses it, ≤ 0 when met} for the four
    accuracy goals against `standard` (λ = 0) and `robust` (λ = 1) (SA, RA), plus whether every λ
    inside (0, 1) lies between the ends (`between_ends`) and each span as a share of the dedicated one
    (None when the dedicated ends do not differ)."""
    dedicated_sa_span, dedicated_ra_span = standard[0] - robust[0], robust[1] - standard[1]
    shortfalls = {
        "sa_at_0": standard[0] - SA_END_PP - points[0.0][0],
        "ra_at_1": robust[1] - RA_END_PP - points[1.0][1],
        "sa_span": SPAN_SHARE * dedicated_sa_span - span(points, 0),
        "ra_span": SPAN_SHARE * dedicated_ra_span - span(points, 1),
    }
    between = all(
        min(points[0.0][i], points[1.0][i]) - BETWEEN_PP <= p[i] <= max(points[0.0][i], points[1.0][i]) + BETWEEN_PP
        for lam, p in points.items() if 0.0 < lam < 1.0 for i in (0, 1))
    return dict(shortfalls_pp=shortfalls, between_ends=between,
                span_shares=dict(sa=_share(span(points, 0), dedicated_sa_span), ra=_share(span(points, 1), dedicated_ra_span)))


def _share(own, dedicated):
    return own / dedicated if dedicated > 0 else None
