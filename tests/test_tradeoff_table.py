"""The trade-off table the trainer prints and the λ-separation check of the quickstart record."""

import pytest

from oat_tf.tradeoff_table import end_separation, tradeoff_table


def _row(lam, width, sa, ra, n=500):
    return dict(**{"lambda": lam}, width=width, attack="pgd7", sa=sa, ra=ra, n_clean=n, n_robust=n)


ROWS = [_row(0.0, 0.5, 0.50, 0.10), _row(1.0, 0.5, 0.40, 0.20),
        _row(0.0, 1.0, 0.55, 0.12), _row(1.0, 1.0, 0.50, 0.30)]


def test_table_has_a_line_per_lambda_and_a_column_per_width():
    lines = tradeoff_table(ROWS).splitlines()
    assert lines[0] == "| λ | width 0.5: SA / RA(pgd7) % | width 1: SA / RA(pgd7) % |"
    assert lines[2] == "| 0 |  50.0 / 10.0 |  55.0 / 12.0 |"
    assert lines[3] == "| 1 |  40.0 / 20.0 |  50.0 / 30.0 |"
    assert len(lines) == 4


def test_table_marks_missing_cells_and_refuses_mixed_attacks():
    assert "| 1 |  40.0 / 20.0 | – |" in tradeoff_table(ROWS[:3])
    with pytest.raises(ValueError, match="one attack"):
        tradeoff_table(ROWS + [dict(ROWS[0], attack="fgsm")])


def test_end_separation_per_width():
    half, full = end_separation(ROWS, margin_pp=8.0)
    assert (half["sa_gap_pp"], half["ra_gap_pp"], half["holds"]) == (10.0, 10.0, True)
    assert (full["sa_gap_pp"], full["ra_gap_pp"], full["holds"]) == (5.0, 18.0, False)
    # sqrt(0.5·0.5/500 + 0.4·0.6/500) = 3.13 pp
    assert half["sa_gap_se_pp"] == pytest.approx(3.13, abs=0.01)


def test_end_separation_needs_both_ends():
    with pytest.raises(ValueError, match="width 1 needs rows"):
        end_separation(ROWS[:3])


def test_record_quickstart_writes_the_table_and_verdicts(tmp_path):
    import json
    import os
    import sys

    from tests.conftest import ROOT, run_step

    run = tmp_path / "run"
    run.mkdir()
    summary = dict(command="python train/oats.py --preset=cpu", commit="abc", time_utc="2026-01-01T00:00:00+00:00",
                   hardware=dict(cpu="cpu", cores=2, gpus=[]), data="cifar10 validation split",
                   config=dict(method="oats", model="resnet20", width_multiplier=0.5, epochs=7, train_examples=10000,
                               train_attack="fgsm-rs", lam_set=[0.0, 1.0], film_form="identity"),
                   epoch_seconds=[60.0] * 7, invocation_seconds=900.0, validation=ROWS)
    (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "out"
    command = [sys.executable, os.path.join(ROOT, "experiments", "record_quickstart.py"), f"--run_dir={run}",
               "--name=qs", f"--out={out}"]
    finished = run_step("record_quickstart.py", command, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    text = (out / "README.md").read_text()
    assert json.loads((out / "qs_summary.json").read_text()) == summary
    assert "Wall clock: 15.0 min (the whole run)" in text and tradeoff_table(ROWS) in text
    assert "- width 0.5: SA +10.0 ± 3.1 pp, RA +10.0 ± 2.2 pp — **holds**" in text
    assert "- width 1: SA +5.0 ± 3.1 pp, RA +18.0 ± 2.5 pp — **does not hold**" in text
    missing = run_step("record_quickstart.py on a missing run", command[:2] + [f"--run_dir={tmp_path / 'none'}",
                                                                               f"--out={out}"], timeout=120)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
