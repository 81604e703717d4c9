import json
import os
import sys

import numpy as np
import pytest

from oat_tf.config import TrainConfig
from oat_tf.reproduce import analysis
from oat_tf.reproduce.plan import BUDGETS, Run, build_plan
from oat_tf.provenance import write_json
from oat_tf.reproduce.runner import cached_evaluation, evaluation_path, jobs, run_config, trained_summary
from tests.conftest import CIFAR10, ROOT, run_step

FIGURES = ("fig2_bn_statistics.png", "fig4_sa_ra_frontier.png", "fig5_unseen_lambdas.png", "fig6_oats_vs_pgdats.png",
           "fig7_attacks.png", "saliency.png")


def _reproduce(tmp_path, step, timeout):
    command = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--budget=smoke",
               f"--data_dir={CIFAR10}", f"--runs_dir={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}"]
    return run_step(step, command, timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.slow
def test_smoke_budget_runs_end_to_end_and_resumes(tmp_path):
    first = _reproduce(tmp_path, "the smoke reproduction", timeout=600)  # about 90 s here
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "out"
    report = json.loads((out / "reproduce.json").read_text())
    assert report["pending_jobs"] == [] and report["data"] == "CIFAR-10 (JPEG copy)"
    assert report["command"].startswith("python experiments/reproduce.py --budget=smoke")
    assert sorted(report["figures"]) == sorted(FIGURES)
    from PIL import Image

    for name in FIGURES:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 200
    plan = build_plan(BUDGETS["smoke"])
    assert sorted(report["runs"]) == sorted(run.name for run in plan)
    for name, run in report["runs"].items():
        assert run["train_seconds"] > 0 and run["train_cpu_seconds"] > 0
        assert len(run["epoch_seconds"]) == run["config"]["epochs"]  # 1, × the recipe's epoch scale for OAT(S)
        for evaluation in run["evaluations"].values():
            for row in evaluation["rows"]:
                assert row["n_clean"] == 200 and row["n_robust"] in (64, 32)
                assert 0 <= row["ra"] <= 1 and 0 <= row["sa"] <= 1
    oats_rows = report["runs"]["oats"]["evaluations"]["main"]["rows"]
    assert {(r["lambda"], r["width"]) for r in oats_rows} == {(lam, w) for lam in (0, .1, .2, .3, .4, 1)
                                                             for w in (0.5, 1.0)}
    verdicts = {claim["id"]: claim["verdict"] for claim in report["claims"]}
    assert set(verdicts.values()) <= {"holds", "does not hold", "not measured yet"}
    assert "fig4-near-frontier" in verdicts and verdicts["fig4-near-frontier"] != "not measured yet"
    readme = (out / "README.md").read_text()
    assert "## Claims" in readme and "CIFAR-10 (JPEG copy)" in readme and "Incomplete" not in readme

    evaluation_file = tmp_path / "runs" / "oat" / "eval_main.json"
    stamp = evaluation_file.stat().st_mtime_ns
    again = _reproduce(tmp_path, "the finished smoke reproduction, rerun", timeout=180)  # everything finished: nothing is trained or evaluated again
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[reproduce] training" not in again.stdout and "[reproduce] evaluating" not in again.stdout
    assert evaluation_file.stat().st_mtime_ns == stamp


def test_plan_puts_the_frontier_first_and_apgd_last():
    budget = BUDGETS["cpu"]
    ordered = jobs(build_plan(budget), budget)
    trained = [run.name for run, evaluation in ordered if evaluation is None]
    assert trained[:4] == ["pgdat-lam0", "pgdat-lam1", "oat", "oat-bn"]
    assert len(trained) == 6 + 2 + 3 + 1 + 3  # dedicated, OAT with both BNs, S3 dedicated, OATS, PGD-ATS
    tail = [evaluation.name for _, evaluation in ordered[-7:]]
    assert tail == ["strongest"] * 7  # OAT plus the six dedicated models


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_every_budget_gives_valid_training_configs(name, tmp_path):
    budget = BUDGETS[name]
    configs = [run_config(budget, run, str(tmp_path), "cifar10", None) for run in build_plan(budget)]
    assert len({c.run_dir for c in configs}) == len(configs)
    assert {c.method for c in configs} == {"pgdat", "oat", "oats", "pgdats"}
    assert [c.normal_bn for c in configs].count(True) == 1


def test_finished_run_with_other_settings_is_refused(tmp_path):
    config = TrainConfig(method="pgdat", run_dir=str(tmp_path), model="resnet20", epochs=5)
    assert trained_summary(config) is None
    stored = dict(config.to_dict(), epochs=3)
    (tmp_path / "summary.json").write_text(json.dumps({"config": stored}))
    with pytest.raises(ValueError, match="epochs"):
        trained_summary(config)
    (tmp_path / "summary.json").write_text(json.dumps({"config": dict(config.to_dict(), data_dir="/elsewhere")}))
    assert trained_summary(config) is not None  # where the data lie is not part of the experiment


def test_cached_evaluation_is_reused_only_for_the_same_spec_and_model(tmp_path):
    spec = dict(name="main", lambdas=[0.0, 1.0], attacks=["pgd20"], num_robust=2000, model_sha256="a" * 64)
    assert cached_evaluation(str(tmp_path), spec) is None
    write_json(evaluation_path(str(tmp_path), "main"), dict(spec=spec, rows=[], seconds=1.0))
    assert cached_evaluation(str(tmp_path), dict(spec))["seconds"] == 1.0
    assert cached_evaluation(str(tmp_path), dict(spec, model_sha256="b" * 64)) is None  # retrained model
    assert cached_evaluation(str(tmp_path), dict(spec, attacks=["pgd20", "fgsm"])) is None


def _done(curves):
    """A fake `completed()` result: {name: (role, λ of a dedicated run, {attack: {λ: (sa, ra)}})}."""
    done = {}
    for name, (role, lam, by_attack) in curves.items():
        rows = [dict(attack=attack, width=1.0, **{"lambda": l}, sa=sa / 100, ra=ra / 100)
                for attack, points in by_attack.items() for l, (sa, ra) in points.items()]
        done[name] = dict(run=Run(name, role, dict(lam=lam), ()), evaluations={"main": {"rows": rows}})
    return done


def test_claims_follow_their_criteria():
    budget = BUDGETS["cpu"]
    frontier = {0.0: (80, 0), 0.1: (75, 20), 0.2: (72, 25), 0.3: (70, 28), 0.4: (68, 30), 1.0: (60, 35)}
    curves = {f"pgdat-{lam:g}": ("dedicated", lam, {"pgd20": {lam: p}}) for lam, p in frontier.items()}
    close = {lam: (sa - 1, ra + 0.5) for lam, (sa, ra) in frontier.items()}
    curves["oat"] = ("oat", None, {"pgd20": close})
    curves["oat-bn"] = ("oat-bn", None, {"pgd20": {lam: (70 + lam, 20 + lam) for lam in frontier}})
    verdicts = {c["id"]: c["verdict"] for c in analysis.claims(_done(curves), budget, {})}
    assert verdicts["fig4-wide-range"] == verdicts["fig4-near-frontier"] == "holds"
    assert verdicts["fig4-normal-bn-narrow"] == "holds"
    assert verdicts["fig5-unseen-vs-dedicated"] == verdicts["cost"] == "not measured yet"

    curves["oat"] = ("oat", None, {"pgd20": {**close, 0.2: (72, 21.5)}})  # 3.5 pp short in RA at λ = 0.2
    verdicts = {c["id"]: c["verdict"] for c in analysis.claims(_done(curves), budget, {})}
    assert verdicts["fig4-near-frontier"] == "does not hold" and verdicts["fig4-wide-range"] == "holds"
    del curves["pgdat-0.4"]  # a failure at one λ is decisive even with λ missing
    verdicts = {c["id"]: c["verdict"] for c in analysis.claims(_done(curves), budget, {})}
    assert verdicts["fig4-near-frontier"] == "does not hold" and verdicts["fig4-wide-range"] == "not measured yet"
    curves["pgdat-0.4"] = ("dedicated", 0.4, {"pgd20": {0.4: frontier[0.4]}})
    curves["oat-bn"] = ("oat-bn", None, {"pgd20": close})
    verdicts = {c["id"]: c["verdict"] for c in analysis.claims(_done(curves), budget, {})}
    assert verdicts["fig4-normal-bn-narrow"] == "does not hold"


def test_goal_checks_oat_against_the_dedicated_ends():
    from oat_tf.reproduce import report

    curves = {"pgdat-0": ("dedicated", 0.0, {"pgd20": {0.0: (60, 0)}}),
              "pgdat-1": ("dedicated", 1.0, {"pgd20": {1.0: (40, 25)}}),
              "oat": ("oat", None, {"pgd20": {0.0: (58, 1), 0.2: (55, 8), 1.0: (45, 24)}})}
    checks = report.goal_checks(_done(curves), BUDGETS["cpu"])
    assert set(checks) == {"OAT"}  # no OATS runs: nothing to check for them
    oat = checks["OAT"]
    # λ = 0 SA 58 ≥ 60 − 3 and λ = 1 RA 24 ≥ 25 − 2 hold; the SA span 13 of 20 pp (65 %) misses 70 %.
    assert {k: v <= 0 for k, v in oat["shortfalls_pp"].items()} == dict(sa_at_0=True, ra_at_1=True, sa_span=False,
                                                                       ra_span=True)
    assert oat["span_shares"]["sa"] == pytest.approx(0.65) and oat["span_shares"]["ra"] == pytest.approx(0.92)
    assert oat["between_ends"]
    text = "\n".join(report._goal_section(checks))
    assert "| OAT | 58.0 / 1.0 vs 60.0 / 0.0: SA holds | 45.0 / 24.0 vs 40.0 / 25.0: RA holds | 65%: **misses** |" in text
    curves["oat"][2]["pgd20"][0.2] = (30, 8)  # a λ in between far below both ends
    assert not report.goal_checks(_done(curves), BUDGETS["cpu"])["OAT"]["between_ends"]
    curves["pgdat-1"] = ("dedicated", 1.0, {"pgd20": {1.0: (60, 0)}})  # ends that do not differ (a tiny model)
    checks = report.goal_checks(_done(curves), BUDGETS["cpu"])
    assert checks["OAT"]["span_shares"] == dict(sa=None, ra=None) and "| —: holds |" in "\n".join(report._goal_section(checks))


def test_bn_separation_and_gradient_alignment():
    rng = np.random.default_rng(0)
    channels = 64
    stats = {lam: (rng.normal(shift, 0.1, channels), np.exp(rng.normal(shift, 0.1, channels)))
             for lam, shift in ((0.0, 2.0), (0.1, 0.0), (0.4, 0.05), (1.0, 0.1))}
    separated = analysis.bn_separation(stats)
    assert separated["min_distance_clean_to_adversarial"] > separated["max_distance_among_adversarial"]
    stats[0.0] = stats[0.4]
    together = analysis.bn_separation(stats)
    assert together["min_distance_clean_to_adversarial"] < together["max_distance_among_adversarial"]
    assert analysis.bn_separation({0.0: stats[0.0], 1.0: stats[1.0]}) is None

    images = rng.random((4, 8, 8, 3))
    centred = images - images.reshape(4, -1).mean(1)[:, None, None, None]
    assert analysis.gradient_alignment(-2 * centred, images) == pytest.approx(1.0)
    assert analysis.gradient_alignment(rng.normal(size=(4, 8, 8, 3)), images) < 0.2


def test_recipes_change_only_the_oat_runs_and_port_matches_its_committed_report(tmp_path):
    from oat_tf.config import RECIPES
    from oat_tf.reproduce.runner import LOCAL_FIELDS

    budget = BUDGETS["cpu"]

    def configs(recipe):
        return {run.name: {k: v for k, v in run_config(budget, run, str(tmp_path), "cifar10", None).to_dict().items()
                           if k not in LOCAL_FIELDS} for run in build_plan(budget, recipe)}

    by_recipe = {name: configs(name) for name in RECIPES}
    for name, runs in by_recipe.items():
        for run, config in runs.items():
            if run in ("oat", "oat-bn", "oats"):
                assert config["shortcut_film"] == RECIPES[name]["shortcut_film"], (name, run)
            elif run.startswith("pgdats"):  # the slimmable baselines train as OATS does
                assert config == dict(by_recipe["paper"][run], width_loss=RECIPES[name]["width_loss"]), (name, run)
            else:
                assert config == by_recipe["paper"][run], (name, run)  # dedicated runs: one for every recipe
    # The committed port report's runs restore into a port (or, for the dedicated ones, any) recipe's plan.
    with open(os.path.join(ROOT, "results", "reproduce-cpu-port", "reproduce.json")) as f:
        recorded = json.load(f)["runs"]
    assert sorted(recorded) == sorted(by_recipe["port"])
    for run, config in by_recipe["port"].items():
        stored = TrainConfig.stored_dict(recorded[run]["config"])
        assert {k: v for k, v in stored.items() if k not in LOCAL_FIELDS} == config, run


def test_report_sets_recipes_side_by_side(tmp_path):
    from oat_tf.reproduce.report import _other_claims, _side_by_side

    claim = dict(id="fig4-wide-range", figure="Fig. 4", criterion="spans ≥ 50 %", measured="SA/RA span 3/12",
                 verdict="does not hold")
    path = tmp_path / "reproduce.json"
    path.write_text(json.dumps({"claims": [dict(claim, measured="SA/RA span 15/20", verdict="holds")]}))
    lines = _side_by_side(dict(recipe=dict(name="cpu"), claims=[claim, dict(claim, id="new-claim")]),
                          _other_claims({"port": str(path)}))
    assert lines[6] == "| Fig. 4 | spans ≥ 50 % | SA/RA span 3/12 (**does not hold**) | SA/RA span 15/20 (**holds**) |"
    assert lines[7].endswith("| — |")  # a claim the other report lacks
    piped = _side_by_side(dict(recipe=dict(name="cpu"), claims=[dict(claim, measured="|cos| 0.3")]), {})
    assert "\\|cos\\| 0.3" in piped[-2]  # a "|" in a cell does not split the table row
