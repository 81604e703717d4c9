"""The reproduction report: `reproduce.json` (every number, with how it was made), one PNG per
figure and README.md (each claim of the paper, what was measured, whether it holds)."""

import json
import os

from oat_tf.config import RECIPES, json_values
from oat_tf.evaluate import load_evaluation_data, load_model
from oat_tf.lambdas import S1
from oat_tf.provenance import provenance, write_atomic, write_json
from oat_tf.reproduce import analysis, figures, goal
from oat_tf.reproduce.runner import completed, jobs

ALIGNMENT_IMAGES = 200  # test images for the saliency alignment number
DISCUSSION_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "experiments")


def data_name(dataset, data_dir):
    if dataset == "cifar10" and data_dir:
        return "CIFAR-10 (JPEG copy)"
    return f"{dataset} ({'image folder ' + data_dir if data_dir else 'tensorflow-datasets'})"


def pending_jobs(plan, budget, done):
    """Names of the jobs that have not finished, in plan order."""
    names = []
    for run, evaluation in jobs(plan, budget):
        entry = done.get(run.name)
        if evaluation is None and entry is None:
            names.append(f"train {run.name}")
        elif evaluation is not None and (entry is None or evaluation.name not in entry["evaluations"]):
            names.append(f"evaluate {run.name} ({evaluation.name}: {', '.join(evaluation.attacks)})")
    return names


def _panels(done, budget):
    """{figure file: (panels, hollow λ)} of the SA–RA figures."""
    main = budget.main_attack
    dedicated = analysis.dedicated_curve(done, "dedicated", main)
    oat = analysis.model_curve(done, "oat", main)
    fig5_dedicated = {**dedicated, **analysis.dedicated_curve(done, "unseen-dedicated", main)}
    fig5_oat = {**oat, **analysis.model_curve(done, "oat", main, "unseen")}
    widths = budget.widths
    fig7 = {}
    for attack, evaluation in budget.fig7_attacks:
        fig7[attack] = {"PGD-AT [one model per λ]": analysis.dedicated_curve(done, "dedicated", attack, evaluation),
                        "OAT (dual BN)": analysis.model_curve(done, "oat", attack, evaluation)}
    return {
        "fig4_sa_ra_frontier.png": ({f"Fig. 4: PGD-AT frontier vs OAT ({main})": {
            "PGD-AT [one model per λ]": dedicated, "OAT (dual BN)": oat,
            "OAT (normal BN)": analysis.model_curve(done, "oat-bn", main)}}, ()),
        "fig5_unseen_lambdas.png": ({f"Fig. 5: unseen λ (hollow: S3, never trained on; {main})": {
            "PGD-AT [one model per λ]": fig5_dedicated, "OAT (dual BN) [trained on S1]": fig5_oat}},
            tuple(budget.unseen_lambdas)),
        "fig6_oats_vs_pgdats.png": ({f"Fig. 6: width {w:g} ({main})": {
            "OATS": analysis.model_curve(done, "oats", main, width=w),
            "PGD-ATS [one model per λ]": analysis.dedicated_curve(done, "slimmable-dedicated", main, width=w)}
            for w in widths}, ()),
        "fig7_attacks.png": ({f"Fig. 7: {attack}": curves for attack, curves in fig7.items()}, ()),
    }


def _has_model(entry):
    """Runs restored from a committed report have numbers but no model file."""
    return os.path.exists(os.path.join(entry["config"].run_dir, "model.keras"))


def _bn_statistics(done):
    stats, layer = {}, None
    for entry in done.values():
        if entry["run"].role == "dedicated" and _has_model(entry):
            mean, variance, layer = analysis.last_bn_statistics(load_model(entry["config"].run_dir))
            stats[entry["config"].lam] = (mean, variance)
    return stats, layer


def _saliency(done, budget, dataset, data_dir):
    """({label: gradients of the shown images}, shown images, {label: alignment over ALIGNMENT_IMAGES})."""
    models = []
    if "oat" in done and _has_model(done["oat"]):
        oat = load_model(done["oat"]["config"].run_dir)
        models += [(f"OAT λ={lam:g}", oat, lam) for lam in (0.0, 0.2, 1.0)]
    for entry in done.values():
        if entry["run"].role == "dedicated" and entry["config"].lam in (0.0, 1.0) and _has_model(entry):
            models.append((f"PGD-AT λ={entry['config'].lam:g}", load_model(entry["config"].run_dir), 0.0))
    if not models:
        return {}, None, {}
    images, labels = load_evaluation_data(dataset, "test", data_dir or None, seed=1,
                                          num_clean=max(ALIGNMENT_IMAGES, budget.saliency_images))
    shown, gradients, alignment = images[: budget.saliency_images], {}, {}
    for label, model, lam in sorted(models, key=lambda m: m[0]):
        g = analysis.input_gradients(model, images, labels, lam)
        gradients[label] = g[: budget.saliency_images]
        alignment[label] = round(analysis.gradient_alignment(g, images), 4)
    return gradients, shown, alignment


def _cost(done, budget):
    """Training seconds (wall clock and process CPU) of OAT(S) against the dedicated runs it replaces."""
    dedicated = [e for e in done.values() if e["run"].role == "dedicated"]
    if "oat" not in done or not dedicated:
        return None

    def total(entries, kind):
        return round(sum(e[kind] for e in entries), 1)

    cost = dict(dedicated_runs=len(dedicated),
                per_run={name: dict(wall_seconds=round(e["train_seconds"], 1),
                                    cpu_seconds=round(e["train_cpu_seconds"], 1)) for name, e in done.items()})
    for kind, suffix in (("train_seconds", "seconds"), ("train_cpu_seconds", "cpu_seconds")):
        cost.update({f"oat_{suffix}": total([done["oat"]], kind), f"dedicated_{suffix}": total(dedicated, kind)})
    slimmable = [e for e in done.values() if e["run"].role == "slimmable-dedicated"]
    if "oats" in done and slimmable:
        cost.update(oats_cpu_seconds=total([done["oats"]], "train_cpu_seconds"),
                    slimmable_dedicated_cpu_seconds=total(slimmable, "train_cpu_seconds"),
                    slimmable_dedicated_runs=len(slimmable))
    return cost


def goal_checks(done, budget):
    """Issue 13's goal (`goal.check`) for OAT against the dedicated PGD-AT ends and for OATS at each
    width against the PGD-ATS ends, where both ends and the model are evaluated."""
    main = budget.main_attack
    checks = {}
    for label, name, role, width in [("OAT", "oat", "dedicated", 1.0)] + [
            (f"OATS width {w:g}", "oats", "slimmable-dedicated", w) for w in budget.widths]:
        points = analysis.model_curve(done, name, main, width=width)
        ends = analysis.dedicated_curve(done, role, main, width=width)
        if {0.0, 1.0} <= set(points) & set(ends):
            checks[label] = dict(goal.check(ends[0.0], ends[1.0], points), model=points[0.0] + points[1.0],
                                 dedicated=ends[0.0] + ends[1.0])
    return checks


def write(plan, budget, runs_dir, dataset, data_dir, out, command=None, recipe="port", other_reports=None):
    """Writes reproduce.json, the figures and README.md to `out` from what has finished in `runs_dir`,
    the OAT and OATS runs trained with `recipe`; `other_reports` ({recipe: reproduce.json path} of the
    same budget) are compared claim by claim."""
    os.makedirs(out, exist_ok=True)
    done = completed(plan, budget, runs_dir, dataset, data_dir)
    data = data_name(dataset, data_dir)
    setting = f"{data}, budget '{budget.name}', ε = 8/255"
    written = []
    for name, (panels, hollow) in _panels(done, budget).items():
        figures.tradeoff_figure(panels, os.path.join(out, name), setting, hollow)
        written.append(name)
    stats, layer = _bn_statistics(done)
    if stats:
        figures.bn_statistics_figure(stats, os.path.join(out, "fig2_bn_statistics.png"),
                                     f"Fig. 2: last BN ({layer.split('/')[-3]}) of PGD-AT models\n{setting}")
        written.append("fig2_bn_statistics.png")
    gradients, shown, alignment = _saliency(done, budget, dataset, data_dir)
    if gradients:
        figures.saliency_figure(shown, gradients, os.path.join(out, "saliency.png"),
                                f"∇ₓ of the clean loss\n{data}, budget '{budget.name}'")
        written.append("saliency.png")
    extras = dict(bn_separation=analysis.bn_separation(stats), saliency_alignment=alignment, cost=_cost(done, budget))
    checked = analysis.claims(done, budget, extras)
    pending = pending_jobs(plan, budget, done)
    report = provenance(
        data=data, dataset_split=budget.split, budget=dict(vars(budget)), figures=written,
        pending_jobs=pending, claims=checked, goal=goal_checks(done, budget), bn_last_layer=layer,
        recipe=dict(name=recipe, fields=json_values(RECIPES[recipe])),
        bn_statistics={f"{lam:g}": dict(mean=m.round(5).tolist(), variance=v.round(5).tolist())
                       for lam, (m, v) in sorted(stats.items())},
        saliency_alignment=alignment, cost=extras["cost"],
        runs={name: dict(role=e["run"].role, config=e["config"].to_dict(), train_seconds=round(e["train_seconds"], 1),
                         train_cpu_seconds=round(e["train_cpu_seconds"], 1), epoch_seconds=e["summary"].get("epoch_seconds"), trained_utc=e["summary"].get("time_utc"),
                         hardware=e["summary"].get("hardware"), commit=e["summary"].get("commit"),
                         evaluations={k: dict(rows=v["rows"], seconds=v["seconds"], spec=v["spec"])
                                      for k, v in e["evaluations"].items()})
              for name, e in done.items()},
    )
    report["command"] = command or report["command"]  # the suite's command, not this report's process
    write_json(os.path.join(out, "reproduce.json"), report)
    text = readme(report, budget, done, _other_claims(other_reports or {}))
    write_atomic(os.path.join(out, "README.md"), lambda temporary: open(temporary, "w").write(text))
    return report


def _table(points_by_label, lambdas):
    lines = ["| λ | " + " | ".join(points_by_label) + " |", "|---|" + "---|" * len(points_by_label)]
    for lam in lambdas:
        cells = [f"{p[lam][0]:.1f} / {p[lam][1]:.1f}" if lam in p else "—" for p in points_by_label.values()]
        lines.append(f"| {lam:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _other_claims(reports):
    """{recipe: (report path, {claim id: claim})} of other recipes' committed reports."""
    claims = {}
    for name, path in reports.items():
        with open(path) as f:
            claims[name] = (path, {claim["id"]: claim for claim in json.load(f)["claims"]})
    return claims


def _side_by_side(report, others):
    """Markdown lines: each claim's measurement and verdict under this recipe and the others."""
    names = [report["recipe"]["name"]] + list(others)
    lines = ["## Recipes side by side", "",
             "The same claims and criteria, the OAT and OATS runs trained with each recipe (the dedicated models are "
             "the same runs): " + "; ".join(f"`{n}`: `{p}`" for n, (p, _) in others.items()) + ".", "",
             "| figure | criterion | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]

    def cell(text):
        return text.replace("|", "\\|").replace("\n", " ")

    for claim in report["claims"]:
        cells = [claim] + [claims.get(claim["id"]) for _, claims in others.values()]
        lines.append(f"| {claim['figure']} | {cell(claim['criterion'])} | " + " | ".join(
            "—" if c is None else f"{cell(c['measured'])} (**{c['verdict']}**)" for c in cells) + " |")
    return lines + [""]


def _share(value):
    return "—" if value is None else f"{value:.0%}"


def _goal_section(checks):
    verdict = lambda ok: "holds" if ok else "**misses**"  # noqa: E731
    lines = ["## This project's goal for OAT at this budget (issue 13)", "",
             f"Fixed before the ablation that chose the recipe (`oat_tf/reproduce/goal.py`): λ = 0 SA ≥ the "
             f"dedicated λ = 0 model's − {goal.SA_END_PP:g} pp; λ = 1 RA ≥ the dedicated λ = 1 model's − "
             f"{goal.RA_END_PP:g} pp; SA and RA spans over the evaluated λ ≥ {goal.SPAN_SHARE:.0%} of the dedicated "
             f"ends' (OAT against PGD-AT, OATS against PGD-ATS at the same width); every λ in between within the "
             f"ends' range ± {goal.BETWEEN_PP:g} pp. SA / RA in %.", "",
             "| model | λ = 0: model / dedicated | λ = 1: model / dedicated | SA span share | RA span share | "
             "λ in between |", "|---|---|---|---|---|---|"]
    for label, check in checks.items():
        short, shares = check["shortfalls_pp"], check["span_shares"]
        m, d = check["model"], check["dedicated"]
        lines.append(
            f"| {label} | {m[0]:.1f} / {m[1]:.1f} vs {d[0]:.1f} / {d[1]:.1f}: SA {verdict(short['sa_at_0'] <= 0)} | "
            f"{m[2]:.1f} / {m[3]:.1f} vs {d[2]:.1f} / {d[3]:.1f}: RA {verdict(short['ra_at_1'] <= 0)} | "
            f"{_share(shares['sa'])}: {verdict(short['sa_span'] <= 0)} | "
            f"{_share(shares['ra'])}: {verdict(short['ra_span'] <= 0)} | "
            f"{verdict(check['between_ends'])} |")
    return lines + [""]


def readme(report, budget, done, other_claims=None):
    """README.md text: how it was made, the claims, the numbers per figure, deviations from the paper."""
    runs = report["runs"]
    hours = sum(r["train_seconds"] + sum(e["seconds"] for e in r["evaluations"].values()) for r in runs.values()) / 3600
    lines = [
        f"# Reproducing the paper's claims: budget `{budget.name}`",
        "",
        f"Written by `{report['command']}` at {report['time_utc']} (commit `{report['commit']}`), on "
        f"{report['hardware']['cpu']} with {report['hardware']['cores']} cores"
        f"{', GPUs ' + ', '.join(report['hardware']['gpus']) if report['hardware']['gpus'] else ', no GPU'}; "
        f"TensorFlow {report['software']['tensorflow']}. Data: {report['data']}, test split. "
        f"Setting: {budget.description}. OAT and OATS recipe: `{report['recipe']['name']}` ("
        + ", ".join(f"{k} = {v}" for k, v in report["recipe"]["fields"].items()) + "; `oat_tf/config.py` RECIPES). "
        "Every number is in `reproduce.json`.",
        "",
        f"Evaluation: SA on {'the whole test split' if not budget.num_clean else f'{budget.num_clean} test images'}, "
        f"RA under {budget.main_attack} (ε = 8/255, step 2/255, one random start) on the first {budget.num_robust} of "
        f"a seeded permutation of the test split, MI-FGSM and FGSM on the same images, APGD-CE (100 steps) on the "
        f"first {budget.num_strongest}. Compute{' so far' if report['pending_jobs'] else ''}: {hours:.2f} h of "
        f"training and evaluation ({len(runs)} trained runs).",
        "",
    ]
    if report["pending_jobs"]:
        lines += [f"**Incomplete:** {len(report['pending_jobs'])} jobs have not run yet (rerun the command to "
                  "continue): " + "; ".join(report["pending_jobs"]) + ".", ""]
    lines += ["## Claims", "", "| figure | claim | criterion | measured | verdict |", "|---|---|---|---|---|"]
    for claim in report["claims"]:
        cells = [claim[k].replace("|", "\\|") for k in ("figure", "claim", "criterion", "measured")]
        lines.append("| " + " | ".join(cells) + f" | **{claim['verdict']}** |")
    lines += ["", "The criteria were fixed before the numbers were seen; \"close\" allows 3 pp, about two standard "
              "errors of the difference of two RA estimates on 2,000 images.", ""]
    if other_claims:
        lines += _side_by_side(report, other_claims)
    if report.get("goal"):
        lines += _goal_section(report["goal"])
    main = budget.main_attack

    def curve(name, attack, evaluation="main", width=1.0):
        return analysis.model_curve(done, name, attack, evaluation, width)

    def role_curve(role, attack, evaluation="main", width=1.0):
        return analysis.dedicated_curve(done, role, attack, evaluation, width)

    lines += ["## Fig. 4: SA–RA of dedicated PGD-AT models, OAT (dual BN) and OAT (normal BN)", "",
              "![Fig. 4](fig4_sa_ra_frontier.png)", "", f"SA / RA ({main}) in %:", "",
              _table({"PGD-AT (one model per λ)": role_curve("dedicated", main), "OAT (dual BN)": curve("oat", main),
                      "OAT (normal BN)": curve("oat-bn", main)}, S1), ""]
    unseen = sorted(set(budget.unseen_lambdas) | set(S1))
    lines += ["## Fig. 5: OAT at λ it never saw", "", "![Fig. 5](fig5_unseen_lambdas.png)", "",
              _table({"PGD-AT (one model per λ)": {**role_curve("dedicated", main),
                                                      **role_curve("unseen-dedicated", main)},
                      "OAT (trained on S1)": {**curve("oat", main), **curve("oat", main, "unseen")}}, unseen), ""]
    widths = budget.widths
    lines += ["## Fig. 6: OATS vs PGD-ATS per width", "", "![Fig. 6](fig6_oats_vs_pgdats.png)", "",
              _table({f"{m} w={w:g}": (curve("oats", main, width=w) if m == "OATS"
                                       else role_curve("slimmable-dedicated", main, width=w))
                      for w in widths for m in ("OATS", "PGD-ATS")}, S1), ""]
    attacks = budget.fig7_attacks
    lines += ["## Fig. 7: other attacks", "", "![Fig. 7](fig7_attacks.png)", "",
              _table({f"{m} {a}": (curve("oat", a, e) if m == "OAT" else role_curve("dedicated", a, e))
                      for a, e in attacks for m in ("OAT", "PGD-AT")}, S1), ""]
    missing = ("Not drawn: the model files it needs are missing (runs restored from a committed report keep "
               "their numbers only); the dedicated models' figure is the same for every recipe.")
    lines += ["## Fig. 2: last-BN statistics of PGD-AT models", "",
              "![Fig. 2](fig2_bn_statistics.png)" if "fig2_bn_statistics.png" in report["figures"] else missing, "",
              f"Layer `{report['bn_last_layer']}`; centroids (mean, mean log variance) and distances in "
              "`reproduce.json` (`claims`, id `fig2-bn-statistics`).", "",
              "## Jacobian saliency", "", "![saliency](saliency.png)" if "saliency.png" in report["figures"] else missing,
              "", "Alignment proxy |cos(∇ₓ, x − mean x)| over "
              f"{ALIGNMENT_IMAGES} test images: "
              + (", ".join(f"{k} {v:.3f}" for k, v in report["saliency_alignment"].items()) or "—") + ".", "",
              "## Cost", ""]
    cost = report["cost"]
    if cost:
        lines += [f"Training time of the training steps (validation excluded), as process CPU time, which other "
                  f"work on the machine does not inflate (wall clock in `reproduce.json`): OAT "
                  f"{cost['oat_cpu_seconds'] / 60:.1f} CPU-min; the {cost['dedicated_runs']} dedicated PGD-AT models "
                  f"{cost['dedicated_cpu_seconds'] / 60:.1f} CPU-min in all (ratio "
                  f"{cost['oat_cpu_seconds'] / cost['dedicated_cpu_seconds']:.2f})."
                  + (f" OATS {cost['oats_cpu_seconds'] / 60:.1f} CPU-min vs {cost['slimmable_dedicated_runs']} "
                     f"PGD-ATS models {cost['slimmable_dedicated_cpu_seconds'] / 60:.1f} CPU-min."
                     if "oats_cpu_seconds" in cost else ""), ""]
        lines += ["| run | training CPU-min | wall-clock min |", "|---|---|---|"] + [
            f"| {name} | {t['cpu_seconds'] / 60:.1f} | {t['wall_seconds'] / 60:.1f} |"
            for name, t in cost["per_run"].items()] + [""]
    # The budget's discussion, then the recipe's (what its numbers mean), when written.
    for name in (budget.name, f"{budget.name}_{report['recipe']['name']}"):
        discussion = os.path.join(DISCUSSION_DIR, f"discussion_{name}.md")
        if os.path.exists(discussion):
            with open(discussion) as f:
                lines += [f.read().rstrip(), ""]
    lines += ["## Reproduce", "", "```bash", report["command"] or "python experiments/reproduce.py", "```", "",
              "Rerunning skips finished trainings and evaluations; `--budget=paper` is the full-scale setting "
              "(ResNet-34, 200 epochs, PGD-7 training attack, RA on the whole test split) for GPUs.", ""]
    return "\n".join(lines)
