"""The benchmark scripts run end to end on a small network and write the JSON they document."""

import json
import os
import sys

import pytest

from tests.conftest import ROOT, run_step


@pytest.mark.slow
def test_bundles_bench_compares_every_width_and_format_of_both_networks(tmp_path):
    out = tmp_path / "bundles.json"
    command = [sys.executable, os.path.join(ROOT, "bench", "resnet34_bundles.py"), "--model=resnet8",
               "--formats=float32,int8", "--threads=1", "--runs=3", "--rounds=2", "--interleaved_rounds=5",
               f"--workdir={tmp_path / 'work'}", f"--out={out}"]
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
        assert 0 < row["interleaved_1_threads"]["median_ms"] <= row["interleaved_1_threads"]["p90_ms"]
    ratios = report["interleaved"]["oats_over_plain"]
    assert report["interleaved"]["rounds"] == 5 and len(ratios) == 6  # 3 widths × 2 formats × 1 thread count
    for r in ratios:
        plain, oats = (rows[v, r["width"], r["format"]]["interleaved_1_threads"]["median_ms"]
                       for v in ("slimmable", "oats"))
        assert abs(r["ratio"] - oats / plain) < 1e-9 and r["interval_95"][0] <= r["ratio"] <= r["interval_95"][1]
    assert report["film"]["representation"]  # OATS's λ path form, as its manifest names it
    # The README's tables: one line per width and format, LiteRT's own tool's medians, then the round-robin ones.
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 2 * (1 + 6) and table[:7] != table[7:]
    r = next(r for r in ratios if r["width"] == 0.5 and r["format"] == "int8")
    assert "({:.2f}×, {:.2f}–{:.2f}) |".format(r["ratio"], *r["interval_95"]) in table[7 + 1 + 1]  # width 0.5, int8
    plain, oats = rows["slimmable", 0.5, "int8"], rows["oats", 0.5, "int8"]
    plain_ms, oats_ms = (r["litert_benchmark_1_threads"]["median_ms"] for r in (plain, oats))
    assert f"| 0.5 | int8 | {plain['size_bytes'] / 1e6:.1f} / {oats['size_bytes'] / 1e6:.1f} " in "\n".join(table)
    assert f"{plain_ms:.2f} / {oats_ms:.2f} ({oats_ms / plain_ms:.2f}×) |" in "\n".join(table)
    reprinted = run_step("--table_from", [sys.executable, command[1], f"--table_from={out}"], timeout=120)
    assert reprinted.returncode == 0, reprinted.stderr[-3000:]
    assert [line for line in reprinted.stdout.splitlines() if line.startswith("| ")] == table
    # The bundles again, without exporting them: the same files; another format set or no bundle is refused.
    reuse = command[:4] + ["--latency=false", "--reuse_bundles", f"--workdir={tmp_path / 'work'}",
                           f"--out={tmp_path / 'reused.json'}"]  # the same --model and --formats
    reuse += ["--threads=1", "--interleaved_rounds=3", "--interleaved_block=4"]  # warm turns: 1 untimed + 4 timed
    reused = run_step("--reuse_bundles", reuse, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert reused.returncode == 0, reused.stderr[-3000:]
    again = json.loads((tmp_path / "reused.json").read_text())
    sizes = {(r["variant"], r["width"], r["format"]): r["size_bytes"] for r in again["results"]}
    assert again["bundles_reused"] and sizes == {key: row["size_bytes"] for key, row in rows.items()}
    assert again["interleaved"]["block"] == 4 and len(again["interleaved"]["oats_over_plain"]) == 6
    refused = run_step("--reuse_bundles", [*reuse[:3], "--formats=float32", *reuse[4:]], timeout=300)
    assert refused.returncode != 0 and "not {'model'" in refused.stderr
    missing = run_step("--reuse_bundles", [*reuse[:6], f"--workdir={tmp_path / 'none'}"], timeout=300)
    assert missing.returncode != 0 and "no bundle at" in missing.stderr


@pytest.mark.slow
def test_bundles_bench_counts_instructions_per_inference(tmp_path):
    out = tmp_path / "instructions.json"
    command = [sys.executable, os.path.join(ROOT, "bench", "resnet34_bundles.py"), "--model=resnet8",
               "--formats=float32,int8", "--latency=false", "--instructions", f"--workdir={tmp_path / 'work'}",
               f"--out={out}"]
    result = run_step("bench/resnet34_bundles.py --instructions", command, timeout=900,
                      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["instructions"]["tool"].startswith("valgrind")
    counts = {(r["variant"], r["width"], r["format"]): r["instructions_per_inference"] for r in report["results"]}
    assert len(counts) == 12 and all(count > 0 for count in counts.values())
    # The first call does one-time work (allocation, caches) that the steady-state count leaves out.
    assert all(r["instructions_first_inference"] > r["instructions_per_inference"] for r in report["results"])
    for variant in ("slimmable", "oats"):  # a wider network executes more instructions
        for fmt in ("float32", "int8"):
            assert counts[variant, 0.5, fmt] < counts[variant, 0.75, fmt] < counts[variant, 1.0, fmt]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0].endswith("| M instructions plain / OATS |") and len(table) == 1 + 6


def _int8_routes_result(path, width, disagreeing, source_run="run", margin=None):
    row = dict(route="converter", disagreeing_images=disagreeing)
    if margin is not None:  # the float file's median top-2 margin, the same at every λ here
        row["disagreement_margins"] = {lam: dict(median_margin=margin) for lam in disagreeing}
    result = dict(source_run=source_run, width=width, split="val", examples=10, data="d", command="c", results=[row])
    path.write_text(json.dumps(result))
    return str(path)


@pytest.mark.slow
def test_paired_agreement_compares_the_same_images_cell_by_cell(tmp_path):
    before = [_int8_routes_result(tmp_path / "b1.json", 1.0, {"0.0": [1, 2, 3], "1.0": [4]}, margin=0.5),
              _int8_routes_result(tmp_path / "b2.json", 0.5, {"0.0": [5], "1.0": []})]
    after = [_int8_routes_result(tmp_path / "a1.json", 1.0, {"0.0": [1], "1.0": [4, 6]}, margin=0.8),
             _int8_routes_result(tmp_path / "a2.json", 0.5, {"0.0": [5], "1.0": []})]
    out = tmp_path / "comparison.json"
    command = [sys.executable, os.path.join(ROOT, "bench", "paired_agreement.py"), f"--before={','.join(before)}",
               f"--after={','.join(after)}", f"--out={out}"]
    result = run_step("bench/paired_agreement.py", command, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    cells = {(c["width"], c["lam"]): c for c in report["cells"]}
    assert cells[(1.0, 0.0)]["before"] == 0.7 and cells[(1.0, 0.0)]["after"] == 0.9
    assert cells[(1.0, 0.0)]["difference_pp"] == 20.0 and cells[(1.0, 1.0)]["difference_pp"] == -10.0
    assert cells[(1.0, 1.0)]["median_margin_before"] == 0.5 and cells[(1.0, 1.0)]["median_margin_after"] == 0.8
    assert "median_margin_before" not in cells[(0.5, 0.0)]  # those files record no margins
    # Per-image differences over the 4 cells × 10 images: +1 at two places, −1 at one.
    assert report["pooled"]["difference_pp"] == round(100 * 1 / 40, 3)
    assert report["pooled"]["paired_se_pp"] > 0 and report["commit"]
    mismatched = _int8_routes_result(tmp_path / "m.json", 0.75, {"0.0": [], "1.0": []})
    command[2:4] = [f"--before={before[0]}", f"--after={mismatched}"]
    assert run_step("bench/paired_agreement.py", command[:4], timeout=300).returncode != 0  # other width
    # Another run's file on the same images: refused unless --across_runs says so; a width still must match.
    other_run = _int8_routes_result(tmp_path / "o.json", 1.0, {"0.0": [1], "1.0": [4, 6]}, source_run="tuned")
    command[2:4] = [f"--before={before[0]}", f"--after={other_run}"]
    assert run_step("bench/paired_agreement.py", command[:4], timeout=300).returncode != 0
    assert run_step("bench/paired_agreement.py", command[:4] + ["--across_runs"], timeout=300).returncode == 0
    command[2:4] = [f"--before={before[0]}", f"--after={mismatched}"]
    assert run_step("bench/paired_agreement.py", command[:4] + ["--across_runs"], timeout=300).returncode != 0


def test_median_ratio_pairs_rounds_in_its_bootstrap():
    # In a process of its own: two bench scripts' absl flags cannot be defined in one process.
    check = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from resnet34_bundles import median_ratio
drift = np.random.default_rng(1).uniform(1.0, 3.0, 200)  # the machine's speed, shared by a round's pair
exact = median_ratio(1.1 * drift, drift)
assert abs(exact["ratio"] - 1.1) < 1e-12 and np.allclose(exact["interval_95"], 1.1), exact  # pairs kept: no spread
noisy = median_ratio(1.1 * drift * np.random.default_rng(2).uniform(0.9, 1.1, 200), drift)
assert noisy["interval_95"][0] < noisy["ratio"] < noisy["interval_95"][1], noisy
"""
    done = run_step("median_ratio", [sys.executable, "-c", check, os.path.join(ROOT, "bench")], timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_near_tie_summary_locates_disagreements_among_the_smallest_margins():
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("int8_routes", os.path.join(ROOT, "bench", "int8_routes.py"))
    int8_routes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(int8_routes)
    margins = np.linspace(0.01, 2.0, 100)  # image i's top-2 margin
    logits = np.stack([margins, np.zeros(100), np.full(100, -5.0)], 1)
    agrees = np.ones(100, bool)
    agrees[[0, 3, 50]] = False  # two near-ties and one confident decision
    summary = int8_routes.near_tie_summary(logits, agrees)
    assert summary["median_margin"] == round(float(np.median(margins)), 4)
    assert summary["median_margin_disagreeing"] == round(float(margins[3]), 4)
    assert summary["disagreeing_in_smallest_10pct_margins"] == round(2 / 3, 4)
    assert int8_routes.near_tie_summary(logits, np.ones(100, bool))["median_margin_disagreeing"] is None
