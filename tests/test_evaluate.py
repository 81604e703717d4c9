import json
import os
import sys

import numpy as np
import pytest

from oat_tf import build_model
from oat_tf.evaluate import WORST_CASE, evaluate, load_evaluation_data, rows_to_csv, write_results
from tests.conftest import CIFAR10, ROOT, run_step


@pytest.mark.slow
def test_zero_epsilon_gives_ra_equal_to_sa(trained_model, cifar10):
    x, y = cifar10["test"]
    rows = evaluate(trained_model, x[:96], y[:96], lambdas=[0.0, 0.35], attacks=["fgsm", "pgd7"], epsilon=0.0,
                    batch_size=64, progress=False, jit_compile=False)
    assert len(rows) == 2 * 3
    for row in rows:
        assert row["ra"] == row["sa"] and row["n_clean"] == row["n_robust"] == 96


@pytest.mark.slow
def test_worst_case_is_at_most_every_attack(trained_model, cifar10):
    x, y = cifar10["test"]
    rows = evaluate(trained_model, x[:128], y[:128], lambdas=[0.0], attacks=["fgsm", "pgd7"], epsilon=2 / 255,
                    num_robust=100, batch_size=64, progress=False)
    by_attack = {r["attack"]: r for r in rows}
    assert by_attack[WORST_CASE]["ra"] <= min(by_attack["fgsm"]["ra"], by_attack["pgd7"]["ra"])
    assert by_attack["pgd7"]["ra"] < by_attack["pgd7"]["sa"]
    assert all(r["n_robust"] == 100 and r["n_clean"] == 128 for r in rows)


def test_unseen_lambdas_and_every_width(rng):
    model = build_model("resnet8", "oats", width_multiplier=0.25)
    x, y = rng.random((8, 32, 32, 3), dtype=np.float32), np.arange(8) % 10
    rows = evaluate(model, x, y, lambdas=[0.15, 0.7], attacks=["fgsm"], progress=False, jit_compile=False)
    assert {(r["lambda"], r["width"]) for r in rows} == {(l, w) for l in (0.15, 0.7) for w in (0.5, 0.75, 1.0)}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate(model, x, y, lambdas=[1.2], progress=False)
    with pytest.raises(ValueError, match="widths"):
        evaluate(model, x, y, lambdas=[0.0], widths=[0.6], progress=False)


def test_results_files_say_how_they_were_made(tmp_path):
    rows = [{"lambda": 0.0, "width": 1.0, "attack": "pgd20", "sa": 0.9, "ra": 0.1, "n_clean": 10, "n_robust": 5}]
    write_results(rows, str(tmp_path), data="cifar10 test (JPEG copy)", epsilon_255=8)
    stored = json.loads((tmp_path / "sa_ra.json").read_text())
    assert stored["rows"] == rows
    for key in ("command", "commit", "hardware", "time_utc", "data"):
        assert stored[key]
    assert (tmp_path / "sa_ra.csv").read_text() == rows_to_csv(rows)
    assert (tmp_path / "sa_ra.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def run_cli(*args):
    return run_step(f"evaluation CLI {' '.join(args)}", [sys.executable, "-m", "oat_tf.evaluate", *args], timeout=180,
                    cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.slow
def test_cli_end_to_end_on_real_data(trained_model, tmp_path):
    checkpoint = tmp_path / "model.keras"
    trained_model.save(checkpoint)
    out = tmp_path / "eval"
    result = run_cli(f"--checkpoint={tmp_path}", f"--data_dir={CIFAR10}", "--lambdas=0,0.5", "--attacks=fgsm,pgd7",
                     "--epsilon=2", "--num_clean=200", "--num_robust=64", f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((out / "sa_ra.json").read_text())["rows"]
    assert len(rows) == 6 and rows[0]["n_clean"] == 200 and rows[0]["n_robust"] == 64
    # The CLI measures what the library measures on the same seeded images (two paths, one model).
    images, labels = load_evaluation_data("cifar10", "test", CIFAR10, seed=0, num_clean=200)
    in_process = evaluate(trained_model, images, labels, [0.0, 0.5], attacks=["fgsm", "pgd7"], epsilon=2 / 255,
                          num_robust=64, progress=False)
    for cli_row, row in zip(rows, in_process):
        assert abs(cli_row["sa"] - row["sa"]) <= 1 / 200 and abs(cli_row["ra"] - row["ra"]) <= 2 / 64
    # The model learned: its SA is about 0.32 (on 2,000 test images); 0.18 is 4.3 standard errors
    # (√(0.32·0.68/200) = 0.033) below that, and 3.8 above chance (0.10, standard error 0.021).
    assert 0.18 < rows[0]["sa"] and rows[1]["ra"] < rows[0]["sa"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--checkpoint=/nonexistent", "--out=/tmp/x"], "no saved model"),
        (["--checkpoint=/nonexistent", "--out=/tmp/x", "--attacks=pgd"], "unknown attack"),
    ],
)
def test_cli_bad_input(args, message):
    result = run_cli(*args)
    assert result.returncode != 0 and message in result.stderr
