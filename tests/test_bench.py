"""The benchmark scripts run end to end on a small network and write the JSON they document."""

import json
import os
import sys

from tests.conftest import ROOT, run_step


def test_bundles_bench_compares_every_width_and_format_of_both_networks(tmp_path):
    out = tmp_path / "bundles.json"
    command = [sys.executable, os.path.join(ROOT, "bench", "resnet34_bundles.py"), "--model=resnet8",
               "--formats=float32,int8", "--threads=1", "--runs=3", "--rounds=2", f"--workdir={tmp_path / 'work'}",
               f"--out={out}"]
    result = run_step("bench/resnet34_bundles.py", command, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["commit"] and report["hardware"] and report["rounds"] == 2
    rows = {(r["variant"], r["width"], r["format"]): r for r in report["results"]}
    assert set(rows) == {(v, w, f) for v in ("slimmable", "oats") for w in (0.5, 0.75, 1.0) for f in ("float32", "int8")}
    for row in rows.values():
        assert row["size_bytes"] > 0
        for timer in ("interpreter_1_threads", "litert_benchmark_1_threads"):
            assert len(row[timer]["round_medians_ms"]) == 2 and row[timer]["median_ms"] > 0
    assert report["film"]["representation"]  # OATS's λ path form, as its manifest names it
