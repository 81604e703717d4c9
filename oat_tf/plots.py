"""Figures: the SA–RA trade-off of a λ-conditioned model."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from oat_tf.provenance import write_atomic  # noqa: E402


def plot_tradeoff(rows, path, title="SA–RA trade-off", subtitle=None):
    """One curve per (width, attack): x = standard accuracy, y = robust accuracy, points labelled by λ."""
    figure, axis = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    curves = sorted({(r["width"], r["attack"]) for r in rows})
    for width, attack in curves:
        points = sorted((r["lambda"], r["sa"], r["ra"]) for r in rows if (r["width"], r["attack"]) == (width, attack))
        xs, ys = [100 * p[1] for p in points], [100 * p[2] for p in points]
        axis.plot(xs, ys, marker="o", label=f"width {width:g}, {attack}")
        for lam, x, y in zip((p[0] for p in points), xs, ys):
            axis.annotate(f"λ={lam:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    axis.set_xlabel("standard accuracy (%)")
    axis.set_ylabel("robust accuracy (%)")
    axis.set_title(title if subtitle is None else f"{title}\n{subtitle}", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    write_atomic(path, lambda temporary: figure.savefig(temporary, format="png"))
    plt.close(figure)
