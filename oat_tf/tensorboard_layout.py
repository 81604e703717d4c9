"""TensorBoard's custom-scalars layout of a training run: per width one SA chart and one RA chart,
each with a line per λ, so that moving along the trade-off is one glance instead of ticking tags."""

import json
import re

import tensorflow as tf
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar


def validation_tag(metric, lam, width):
    """The scalar tag of one validation number: metric is "val_sa" or "val_ra_<attack>"."""
    return f"{metric}/lam_{lam:g}/width_{width:g}"


def tradeoff_layout(widths, attack):
    """The layout: a category with, per width, an SA and an RA chart whose lines are the λ."""
    charts = []
    for width in widths:
        for title, metric in (("SA", "val_sa"), (f"RA ({attack})", f"val_ra_{attack}")):
            pattern = "^" + re.escape(f"{metric}/lam_") + r"[^/]+" + re.escape(f"/width_{width:g}") + "$"
            charts.append(layout_pb2.Chart(title=f"{title}, width {width:g}",
                                           multiline=layout_pb2.MultilineChartContent(tag=[pattern])))
    return layout_pb2.Layout(category=[layout_pb2.Category(title="validation SA and RA by λ, per width",
                                                           chart=charts)])


def write_run_overview(writer, widths, attack, config):
    """Writes the layout and the run's configuration (as text) to the run's event file."""
    with writer.as_default(step=0):
        tf.summary.experimental.write_raw_pb(custom_scalar.pb(tradeoff_layout(widths, attack)).SerializeToString())
        tf.summary.text("config", "```\n" + json.dumps(config, indent=1) + "\n```")
    writer.flush()
