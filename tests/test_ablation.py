"""The conditioning ablation study: its plan, its configs and the goal criteria it checks."""

import pytest

from oat_tf.lambdas import S1
from oat_tf.reproduce import ablation
from oat_tf.reproduce.plan import Run
from oat_tf.reproduce.runner import jobs, run_config


def test_plan_changes_one_thing_at_a_time_and_evaluates_on_the_validation_split(tmp_path):
    plan = ablation.build_plan()
    assert [run.name for run in plan[:4]] == ["pgdat-lam0", "pgdat-lam1", "oat", "identity-film"]
    assert ablation.BUDGET.split == "val" and ablation.BUDGET.num_robust >= 2000
    configs = {run.name: run_config(ablation.BUDGET, run, str(tmp_path), "cifar10", None) for run in plan}
    today = configs["oat"].to_dict()
    for name, (fields, _) in ablation.ABLATIONS.items():
        changed = {k for k, v in configs[name].to_dict().items() if v != today[k] and k != "run_dir"}
        assert changed == set(fields), name
    assert configs["oat-s0"].lam_set == (0.0,) and configs["oat-s1"].lam_set == (1.0,)
    # No APGD or other extra evaluations: every run has one, at S1 for the ablations.
    assert all(evaluation is None or evaluation.name == "main" for _, evaluation in jobs(plan, ablation.BUDGET))
    assert all(run.evaluations[0].lambdas == S1 for run in plan if run.role == "ablation")
    for name, (fields, _) in ablation.COMBINATIONS.items():
        changed = {k for k, v in configs[name].to_dict().items() if v != today[k] and k != "run_dir"}
        assert changed == set(fields) and len(fields) > 1, name
    assert set(ablation.QUEUE) == {run.name for run in plan}  # every run is queued, in a stated order


def _entry(name, role, points, cpu_seconds=600.0):
    rows = [{"lambda": lam, "width": 1.0, "attack": "pgd20", "sa": sa / 100, "ra": ra / 100}
            for lam, (sa, ra) in points.items()]
    return dict(run=Run(name, role, {}, ()), evaluations={"main": {"rows": rows}}, train_cpu_seconds=cpu_seconds)


def test_summary_checks_each_goal_criterion():
    done = {"pgdat-lam0": _entry("pgdat-lam0", "baseline", {0.0: (60, 0)}),
            "pgdat-lam1": _entry("pgdat-lam1", "baseline", {1.0: (40, 25)}),
            "oat": _entry("oat", "ablation", {lam: (45, 10 + 10 * lam) for lam in S1}),
            "good": _entry("good", "ablation", {lam: (57.5 - 17 * lam, 6 + 18 * lam) for lam in S1}, 740.0),
            "oat-s0": _entry("oat-s0", "equivalence", {0.0: (58.5, 0.5)}),
            "oat-s1": _entry("oat-s1", "equivalence", {1.0: (40, 22)})}
    summary = ablation.summarize(done)
    assert summary["ablations"]["oat"]["criteria"] == dict(sa_at_0=False, ra_at_1=False, sa_span=False,
                                                           ra_span=False, between_ends=True, compute=True)
    assert summary["ablations"]["oat"]["shortfall_pp"] == pytest.approx((57 - 45) + (23 - 20) + (14 - 0) + (17.5 - 10))
    assert summary["best"] == "good" and summary["ablations"]["good"]["shortfall_pp"] == 0
    good = summary["ablations"]["good"]
    assert good["criteria"] == dict(sa_at_0=True, ra_at_1=True, sa_span=True, ra_span=True, between_ends=True,
                                    compute=True)
    assert good["sa_span"] == pytest.approx(17) and good["compute_vs_today"] == pytest.approx(1.23)
    done["good"]["train_cpu_seconds"] = 760.0  # 1.27× today's recipe
    assert ablation.summarize(done)["ablations"]["good"]["criteria"]["compute"] is False
    assert ablation.summarize(done)["best"] == "oat"  # the only run left within the compute bound
    assert summary["equivalences"]["oat-s0"]["holds"] and not summary["equivalences"]["oat-s1"]["holds"]
    text = ablation.readme(dict(summary=summary, command="python experiments/ablate.py", time_utc="t", commit="c",
                                hardware=dict(cpu="cpu", cores=2), software=dict(tensorflow="2.21"),
                                data="CIFAR-10 (JPEG copy)", pending_jobs=[]), {"good": "a change |S|"})
    assert "| good | a change \\|S\\| | 57.5 / 6.0 |" in text and "(6/6)" in text and "| oat-s1 | 1 |" in text
    # A λ inside (0, 1) below both ends (and a span inflated by it) takes a run out of the choice.
    dipped = {lam: (57.5 - 17 * lam, 6 + 18 * lam) for lam in S1}
    dipped[0.1] = (30.0, 7.0)
    done["dipped"] = _entry("dipped", "ablation", dipped, 600.0)
    summary = ablation.summarize(done)
    assert summary["ablations"]["dipped"]["criteria"]["between_ends"] is False
    assert summary["ablations"]["dipped"]["sa_span"] == pytest.approx(27.5) and summary["best"] == "oat"


def test_runs_recorded_in_a_committed_report_count_as_finished(tmp_path):
    from oat_tf.provenance import write_json
    from oat_tf.reproduce.runner import completed, restore_recorded, trained_summary

    plan = ablation.build_plan()
    run = next(r for r in plan if r.name == "oat")
    config = run_config(ablation.BUDGET, run, "elsewhere", "cifar10", None)
    spec = dict(name="main", lambdas=list(S1), attacks=["pgd20"], num_robust=2000, num_clean=None,
                dataset="cifar10", split="val", seed=0, epsilon_255=8.0, model_sha256="f" * 64)
    rows = [{"lambda": lam, "width": 1.0, "attack": "pgd20", "sa": 0.4, "ra": 0.2} for lam in S1]
    record = dict(config=config.to_dict(), train_seconds=500.0, train_cpu_seconds=700.0, trained_utc="t",
                  commit="c", evaluations={"main": dict(spec=spec, rows=rows, seconds=9.0)})
    other = dict(record, config=dict(config.to_dict(), epochs=3))  # recorded with other settings
    report = tmp_path / "ablation.json"
    write_json(str(report), {"runs": {"oat": record, "identity-film": other}})
    runs_dir = tmp_path / "runs"
    assert restore_recorded(plan, ablation.BUDGET, str(runs_dir), "cifar10", None, str(report)) == ["oat"]
    assert trained_summary(run_config(ablation.BUDGET, run, str(runs_dir), "cifar10", None)) is not None
    done = completed(plan, ablation.BUDGET, str(runs_dir), "cifar10", None)
    assert list(done) == ["oat"] and done["oat"]["evaluations"]["main"]["rows"] == rows
    assert done["oat"]["train_cpu_seconds"] == 700.0
    # A second call restores nothing: the run directory exists now.
    assert restore_recorded(plan, ablation.BUDGET, str(runs_dir), "cifar10", None, str(report)) == []
