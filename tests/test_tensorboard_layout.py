"""The TensorBoard layout: one SA and one RA chart per width, a line per λ, and the config as text."""

import glob
import re

import tensorflow as tf
from tensorboard.plugins.custom_scalar import layout_pb2, metadata

from oat_tf.tensorboard_layout import tradeoff_layout, validation_tag, write_run_overview


def test_each_chart_collects_the_lambdas_of_one_width_and_metric():
    layout = tradeoff_layout((0.5, 1.0), "pgd7")
    charts = {chart.title: chart.multiline.tag[0] for chart in layout.category[0].chart}
    assert list(charts) == ["SA, width 0.5", "RA (pgd7), width 0.5", "SA, width 1", "RA (pgd7), width 1"]
    tags = [validation_tag(metric, lam, width) for metric in ("val_sa", "val_ra_pgd7")
            for lam in (0.0, 0.2, 1.0) for width in (0.5, 1.0)]
    matched = {title: [t for t in tags if re.search(pattern, t)] for title, pattern in charts.items()}
    assert matched["SA, width 0.5"] == ["val_sa/lam_0/width_0.5", "val_sa/lam_0.2/width_0.5", "val_sa/lam_1/width_0.5"]
    assert matched["RA (pgd7), width 1"] == ["val_ra_pgd7/lam_0/width_1", "val_ra_pgd7/lam_0.2/width_1",
                                             "val_ra_pgd7/lam_1/width_1"]


def test_overview_is_written_to_the_event_file(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    write_run_overview(writer, (1.0,), "fgsm", dict(method="oat", epochs=3))
    values = {}
    for path in glob.glob(str(tmp_path / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values[value.tag] = value
    layout = layout_pb2.Layout.FromString(tf.make_ndarray(values[metadata.CONFIG_SUMMARY_TAG].tensor).item())
    assert [chart.title for chart in layout.category[0].chart] == ["SA, width 1", "RA (fgsm), width 1"]
    text = tf.make_ndarray(values["config"].tensor).item().decode()
    assert '"method": "oat"' in text and '"epochs": 3' in text


def test_tensorboard_serves_the_layout_and_the_lambda_lines(tmp_path):
    """What a user opening TensorBoard on a run gets, fetched over HTTP from a TensorBoard server."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    write_run_overview(writer, (0.5, 1.0), "pgd7", dict(method="oats"))
    with writer.as_default(step=1):
        for lam in (0.0, 1.0):
            tf.summary.scalar(validation_tag("val_sa", lam, 0.5), 0.5 - 0.1 * lam)
    writer.flush()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", f"--logdir={tmp_path}", f"--port={port}",
                               "--host=127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        layout, deadline = None, time.monotonic() + 120
        while layout is None or not layout:
            assert time.monotonic() < deadline, "TensorBoard did not serve the layout within 120 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/custom_scalars/layout") as reply:
                    layout = json.loads(reply.read())
            except OSError:
                time.sleep(1)
        charts = [chart["title"] for chart in layout["category"][0]["chart"]]
        assert charts == ["SA, width 0.5", "RA (pgd7), width 0.5", "SA, width 1", "RA (pgd7), width 1"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags") as reply:
            tags = json.loads(reply.read())["run"]
        assert {"val_sa/lam_0/width_0.5", "val_sa/lam_1/width_0.5"} <= set(tags)
    finally:
        server.terminate()
        server.wait(timeout=30)
