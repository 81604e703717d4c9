"""The reproduction's figures (PNG), each titled with its data and setting."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from oat_tf.provenance import write_atomic  # noqa: E402

STYLES = {  # label prefix → (marker, line style)
    "PGD-AT": ("s", ":"), "PGD-ATS": ("s", ":"), "OAT (dual BN)": ("o", "-"), "OAT (normal BN)": ("^", "--"),
    "OATS": ("o", "-"),
}


def _save(figure, path):
    figure.tight_layout()
    write_atomic(path, lambda temporary: figure.savefig(temporary, format="png"))
    plt.close(figure)


def draw_curves(axis, curves, title, hollow=()):
    """curves: {label: {λ: (SA %, RA %)}}; points of λ in `hollow` are drawn unfilled (unseen λ)."""
    for label, points in curves.items():
        if not points:
            continue
        marker, line = STYLES.get(label.split(" [")[0], ("o", "-"))
        lams = sorted(points)
        xs, ys = [points[lam][0] for lam in lams], [points[lam][1] for lam in lams]
        (handle,) = axis.plot(xs, ys, line, label=label, alpha=0.8)
        for lam, x, y in zip(lams, xs, ys):
            axis.plot(x, y, marker, color=handle.get_color(), markerfacecolor="none" if lam in hollow else None)
            axis.annotate(f"{lam:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6,
                          color=handle.get_color())
    axis.set_xlabel("standard accuracy SA (%)")
    axis.set_ylabel("robust accuracy RA (%)")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    if any(curves.values()):
        axis.legend(fontsize=7)


def tradeoff_figure(panels, path, suptitle, hollow=()):
    """One SA–RA panel per entry of `panels` ({panel title: curves}), side by side."""
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), dpi=110, squeeze=False)
    for axis, (title, curves) in zip(axes[0], panels.items()):
        draw_curves(axis, curves, title, hollow)
    figure.suptitle(suptitle, fontsize=9)
    _save(figure, path)


def bn_statistics_figure(stats, path, suptitle):
    """Fig. 2: running mean vs running variance per channel of the last BN, one colour per λ."""
    figure, axis = plt.subplots(figsize=(5.6, 4.6), dpi=110)
    colours = plt.cm.viridis(np.linspace(0, 0.9, max(len(stats), 1)))
    for colour, (lam, (mean, variance)) in zip(colours, sorted(stats.items())):
        axis.scatter(mean, variance, s=8, color=colour, alpha=0.7, label=f"PGD-AT λ={lam:g}")
    axis.set_yscale("log")
    axis.set_xlabel("running mean")
    axis.set_ylabel("running variance (log scale)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    axis.set_title(suptitle, fontsize=9)
    _save(figure, path)


def _visible(gradient):
    """A gradient as an RGB image: centred, scaled by 3 standard deviations, clipped to [0, 1]."""
    g = gradient - gradient.mean()
    return np.clip(0.5 + g / (6 * g.std() + 1e-12), 0.0, 1.0)


def saliency_figure(images, gradients, path, suptitle):
    """Rows: test images; columns: the image, then ∇ₓ of the clean loss per model ({label: (N, S, S, 3)})."""
    labels = list(gradients)
    figure, axes = plt.subplots(len(images), len(labels) + 1, figsize=(1.5 * (len(labels) + 1), 1.6 * len(images)),
                                dpi=110, squeeze=False)
    for i, image in enumerate(images):
        axes[i, 0].imshow(image)
        for j, label in enumerate(labels):
            axes[i, j + 1].imshow(_visible(gradients[label][i]))
    for j, title in enumerate(["image"] + labels):
        axes[0, j].set_title(title, fontsize=7)
    for axis in axes.ravel():
        axis.axis("off")
    figure.suptitle(suptitle, fontsize=8)
    _save(figure, path)
