"""Runs a reproduction plan resumably: a finished training run or evaluation is never redone.

Each run trains in `runs_dir/<run>/` with the project's Trainer (which itself resumes from
its last epoch checkpoint), and each evaluation is cached as `runs_dir/<run>/eval_<name>.json`,
keyed by its specification and the SHA-256 of the model it measured, so a retrained model
is re-evaluated and an unchanged one is not. The report is rewritten after every job, so an
interrupted suite leaves its numbers so far on disk.
"""

import json
import os
import time

import numpy as np

from oat_tf.config import TrainConfig
from oat_tf.evaluate import evaluate, load_evaluation_data, load_model
from oat_tf.provenance import file_sha256, write_json
from oat_tf.reproduce.plan import strongest_evaluations

# Config fields that name places on this machine, not the experiment.
LOCAL_FIELDS = ("data_dir", "run_dir")


def run_config(budget, run, runs_dir, dataset, data_dir):
    """The TrainConfig of `run` under `budget`."""
    fields = dict(budget.train, **run.fields)
    return TrainConfig(dataset=dataset, data_dir=data_dir or "", run_dir=os.path.join(runs_dir, run.name),
                       **fields).validate()


def _experiment_fields(config_dict):
    return {k: v for k, v in config_dict.items() if k not in LOCAL_FIELDS}


def trained_summary(config):
    """The run's summary.json if it finished training with this config, else None.

    Raises ValueError when the directory holds a finished run of a different configuration.
    """
    path = os.path.join(config.run_dir, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    stored = _experiment_fields(TrainConfig.stored_dict(summary["config"]))
    wanted = _experiment_fields(config.to_dict())
    if stored != wanted:
        changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise ValueError(f"{config.run_dir!r} holds a finished run with other settings ({', '.join(changed)}); "
                         "pass another --runs_dir or remove it.")
    return summary


def train(config, strategy):
    """Trains (or resumes) `config` and returns its summary; a finished run is returned as is."""
    summary = trained_summary(config)
    if summary is None:
        from oat_tf.trainer import Trainer

        print(f"[reproduce] training {config.run_dir}", flush=True)
        summary = Trainer(config, strategy=strategy).train()
    return summary


def model_hash(run_dir):
    """SHA-256 of the run's model.keras, or the one recorded in a restored run's summary.json."""
    path = os.path.join(run_dir, "model.keras")
    if os.path.exists(path):
        return file_sha256(path)
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)["model_sha256"]


def _evaluation_spec(evaluation, config, budget):
    return dict(name=evaluation.name, lambdas=list(evaluation.lambdas), attacks=list(evaluation.attacks),
                num_robust=evaluation.num_robust, num_clean=budget.num_clean or None, dataset=config.dataset,
                split=budget.split, seed=0, epsilon_255=config.epsilon_255, model_sha256=model_hash(config.run_dir))


def restore_recorded(plan, budget, runs_dir, dataset, data_dir, report_path):
    """Writes back the summary.json and eval_*.json of every run that the committed report at
    `report_path` records but `runs_dir` lacks (a new checkout: runs/ is not committed), so that a
    resumed suite counts them as finished instead of training them again. Their model files stay
    missing: what needs a model (a new evaluation) must retrain. Returns the restored run names."""
    if not os.path.exists(report_path):
        return []
    with open(report_path) as f:
        recorded = json.load(f).get("runs", {})
    restored = []
    for run in plan:
        record = recorded.get(run.name)
        config = run_config(budget, run, runs_dir, dataset, data_dir)
        if record is None or os.path.exists(os.path.join(config.run_dir, "summary.json")):
            continue
        if _experiment_fields(TrainConfig.stored_dict(record["config"])) != _experiment_fields(config.to_dict()):
            continue
        hashes = {e["spec"]["model_sha256"] for e in record["evaluations"].values()}
        if len(hashes) != 1 or not {e.name for e in run.evaluations} <= set(record["evaluations"]):
            continue  # an evaluation is missing: it needs the model, so the run trains again
        write_json(os.path.join(config.run_dir, "summary.json"), dict(
            config=record["config"], model_sha256=hashes.pop(), restored_from=report_path,
            epoch_seconds=[record["train_seconds"]], epoch_cpu_seconds=[record["train_cpu_seconds"]],
            time_utc=record.get("trained_utc"), commit=record.get("commit")))
        for name, evaluation in record["evaluations"].items():
            write_json(evaluation_path(config.run_dir, name), evaluation)
        restored.append(run.name)
    return restored


def evaluation_path(run_dir, name):
    return os.path.join(run_dir, f"eval_{name}.json")


def cached_evaluation(run_dir, spec):
    path = evaluation_path(run_dir, spec["name"])
    if os.path.exists(path):
        with open(path) as f:
            stored = json.load(f)
        if stored.get("spec") == spec:
            return stored
    return None


class EvaluationData:
    """The evaluated split, loaded once per process, in the evaluation CLI's seeded order."""

    def __init__(self, dataset, split, data_dir, num_clean):
        self.args = (dataset, split, data_dir or None, 0, num_clean or None)
        self._arrays = None

    @property
    def arrays(self):
        if self._arrays is None:
            self._arrays = load_evaluation_data(*self.args)
        return self._arrays


def run_evaluation(run_dir, evaluation, config, budget, data):
    """SA/RA rows of one evaluation of a trained run, from its cache when it is current."""
    model_path = os.path.join(run_dir, "model.keras")
    spec = _evaluation_spec(evaluation, config, budget)
    stored = cached_evaluation(run_dir, spec)
    if stored is not None:
        return stored
    print(f"[reproduce] evaluating {run_dir} {evaluation.name}: λ={list(evaluation.lambdas)} "
          f"attacks={list(evaluation.attacks)} on {evaluation.num_robust} images", flush=True)
    images, labels = data.arrays
    model = load_model(model_path)
    started = time.perf_counter()
    rows = evaluate(model, images, labels, evaluation.lambdas, None, evaluation.attacks, config.epsilon_255 / 255.0,
                    evaluation.num_robust, budget.eval_batch, seed=0, progress=False)
    result = dict(spec=spec, rows=rows, seconds=round(time.perf_counter() - started, 1))
    write_json(evaluation_path(run_dir, evaluation.name), result)
    return result


def jobs(plan, budget):
    """The ordered (run, evaluation or None) jobs: train-then-evaluate per run, the APGD checks last."""
    ordered = []
    for run in plan:
        ordered.append((run, None))
        ordered += [(run, evaluation) for evaluation in run.evaluations]
    return ordered + strongest_evaluations(plan, budget)


def run_plan(plan, budget, runs_dir, dataset, data_dir, strategy, after_job=None):
    """Trains and evaluates everything in `plan`, skipping finished work; calls after_job() after each job."""
    data = EvaluationData(dataset, budget.split, data_dir, budget.num_clean)
    for run, evaluation in jobs(plan, budget):
        config = run_config(budget, run, runs_dir, dataset, data_dir)
        if evaluation is None:
            train(config, strategy)
        else:
            run_evaluation(config.run_dir, evaluation, config, budget, data)
        if after_job is not None:
            after_job()


def completed(plan, budget, runs_dir, dataset, data_dir):
    """What has finished so far: {run name: {"config", "summary", "evaluations": {name: result}}}."""
    done = {}
    for run in plan:
        config = run_config(budget, run, runs_dir, dataset, data_dir)
        summary = trained_summary(config)
        if summary is None:
            continue
        evaluations = {}
        for evaluation in list(run.evaluations) + [e for r, e in strongest_evaluations([run], budget)]:
            stored = cached_evaluation(config.run_dir, _evaluation_spec(evaluation, config, budget))
            if stored is not None:
                evaluations[evaluation.name] = stored
        done[run.name] = dict(run=run, config=config, summary=summary, evaluations=evaluations,
                              train_seconds=float(np.sum(summary.get("epoch_seconds", []))),
                              train_cpu_seconds=float(np.sum(summary.get("epoch_cpu_seconds", []))))
    return done
