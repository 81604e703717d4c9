import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from oat_tf.config import TrainConfig
from oat_tf.data import DataNotFoundError, load_split
from oat_tf.lambda_sampling import LambdaSampler, clean_count
from oat_tf.lambdas import S1
from oat_tf.trainer import Trainer, build_run_model
from tests.conftest import ROOT, run_step


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A real image-folder tree (PNG files): 10 classes × 16 training and 4 test images, 32×32."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split, count in (("train", 16), ("test", 4)):
        for c in range(10):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                base = np.full((32, 32, 3), 25 * c, np.uint8)  # learnable: brightness encodes the class
                noise = rng.integers(0, 40, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(base + noise).save(folder / f"{i}.png")
    return str(root)


def tiny_config(folder, run_dir, **overrides):
    values = dict(method="oat", dataset="cifar10", data_dir=folder, run_dir=str(run_dir), model="resnet8",
                  width_multiplier=0.25, epochs=1, batch_size=32, train_attack="fgsm-rs", validation_size=40,
                  eval_examples=20, eval_attack="fgsm", eval_every=1, learning_rate=0.05)
    values.update(overrides)
    return TrainConfig(**values)


def test_lambda_sampler_keeps_a_fixed_clean_share():
    sampler = LambdaSampler(S1, 128)
    assert sampler.num_clean == clean_count(128, S1) == 22  # ⌈128 / 6⌉
    lam = np.asarray(sampler(tf.constant([1, 2], tf.int64))).astype(np.float64)
    assert np.all(lam[:22] == 0) and set(np.round(lam[22:], 6)) <= {0.1, 0.2, 0.3, 0.4, 1.0}
    assert len(set(np.round(lam[22:], 6))) == 5  # every non-zero value appears in 106 draws
    np.testing.assert_array_equal(lam, np.asarray(sampler(tf.constant([1, 2], tf.int64)), np.float64))
    continuous = np.asarray(LambdaSampler(S1, 64, continuous=True)(tf.constant([0, 0], tf.int64)))
    assert np.all(continuous[:11] == 0) and continuous[11:].min() > 0 and continuous.max() <= 1
    assert clean_count(32, (0.0,)) == 32 and clean_count(32, (0.5, 1.0)) == 0
    assert LambdaSampler((0.0, 1.0), 32).clean_rows == 16 and LambdaSampler((1.0,), 32).clean_rows == 0
    assert LambdaSampler(S1, 32).clean_rows == 32 and LambdaSampler((0.0, 1.0), 32, continuous=True).clean_rows == 32


def test_training_split_subsets_cover_every_class():
    from tests.conftest import CIFAR10

    _, labels, _ = load_split("cifar10", "train", data_dir=CIFAR10)
    assert len(labels) == 45000 and len(np.unique(labels[:500])) == 10
    _, val_labels, _ = load_split("cifar10", "val", data_dir=CIFAR10)
    assert len(val_labels) == 5000


def test_missing_data_fails_fast_with_guidance(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    calls = []
    real_load = tfds.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tfds, "load", recording_load)
    with pytest.raises(DataNotFoundError, match="--data_dir"):
        load_split("svhn", "train")  # not prepared for tfds on this machine
    assert [call["download"] for call in calls] == [False]  # one look, no download attempted
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_split("cifar10", "train", data_dir=str(tmp_path / "missing.tar.gz"))
    assert len(calls) == 1 and not os.listdir(tmp_path)  # a missing path is neither looked up in tfds nor created


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(dataset="mnist"), "unknown dataset"),
        (dict(lam_set=(0.0, 1.5)), r"lam_set values must lie in \[0, 1\]"),
        (dict(method="pgdat", lam=-0.1), r"lam must lie in \[0, 1\]"),
        (dict(method="oats", widths=(0.5, 0.8)), "largest width"),
        (dict(method="sgd"), "unknown method"),
        (dict(train_attack="pgd"), "unknown attack"),
    ],
)
def test_bad_configuration_fails_before_training(tiny_folder, tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        Trainer(tiny_config(tiny_folder, tmp_path / "run", **overrides))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unwritable_run_dir_and_inconsistent_resume(tiny_folder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="not writable"):
        Trainer(tiny_config(tiny_folder, blocker / "run"))
    Trainer(tiny_config(tiny_folder, tmp_path / "run"))  # records its config
    with pytest.raises(ValueError, match="different model"):
        Trainer(tiny_config(tiny_folder, tmp_path / "run", model="resnet32"))
    # A run recorded before the conditioning options existed had their defaults: it resumes with them only.
    path = tmp_path / "run" / "config.json"
    older = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("film_form", "shortcut_film")}
    path.write_text(json.dumps(older))
    Trainer(tiny_config(tiny_folder, tmp_path / "run"))
    path.write_text(json.dumps(older))
    with pytest.raises(ValueError, match="different film_form"):
        Trainer(tiny_config(tiny_folder, tmp_path / "run", film_form="identity"))


def test_unreadable_run_files_name_the_file_and_keep_it(tiny_folder, tmp_path):
    trainer = Trainer(tiny_config(tiny_folder, tmp_path / "run"))
    saved = trainer.manager.save()
    with open(saved + ".data-00000-of-00001", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match=r"cannot resume from '.*ckpt-1'.*move the run directory's checkpoints/ aside"):
        Trainer(tiny_config(tiny_folder, tmp_path / "run"))
    assert os.path.getsize(saved + ".data-00000-of-00001") == 100  # nothing deleted
    (tmp_path / "run" / "config.json").write_text('{"model": ')
    with pytest.raises(ValueError, match=r"config.json' is not valid JSON"):
        Trainer(tiny_config(tiny_folder, tmp_path / "run"))


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--widths=0.5,x", "error: --widths must be a comma list of numbers, got '0.5,x'."),
        ("--lam_set=0,1.5", "error: lam_set values must lie in [0, 1], got 1.5 in [0.0, 1.5]."),
        ("--dataset=mnist", "flag --dataset=mnist: value should be one of <cifar10|stl10|svhn>"),
    ],
)
def test_cli_bad_flags_fail_before_any_work_with_their_message(tmp_path, flag, message):
    result = run_step(f"train/oats.py {flag}", [sys.executable, os.path.join(ROOT, "train", "oats.py"), "--preset=cpu",
                                                 flag, f"--run_dir={tmp_path / 'run'}"], timeout=120,
                      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    # Stopped before any work: no data loaded or model built (nothing described), no step run, nothing written.
    assert "training" not in result.stdout and "compiling" not in result.stdout, result.stdout[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["oat", "oats", "pgdat", "pgdats"])
def test_every_method_trains_and_writes_its_outputs(tiny_folder, tmp_path, method):
    keras.utils.set_random_seed(0)
    trainer = Trainer(tiny_config(tiny_folder, tmp_path, method=method, lam=0.5, epochs=2, eval_every=2))
    before = [np.asarray(v).copy() for v in trainer.model.trainable_variables]
    summary = trainer.train()
    after = trainer.model.trainable_variables
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    assert all(np.isfinite(np.asarray(v)).all() for v in after)
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored["validation"] == summary["validation"]
    widths = {r["width"] for r in summary["validation"]}
    assert widths == ({0.5, 0.75, 1.0} if method in ("oats", "pgdats") else {1.0})
    lambdas = {r["lambda"] for r in summary["validation"]}
    assert lambdas == (set(S1) if method in ("oat", "oats") else {0.5})
    for name in ("model.keras", "config.json", "sa_ra_val.png"):
        assert (tmp_path / name).exists()
    assert tf.io.gfile.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")


@pytest.mark.slow
def test_two_replicas_match_one_device_in_float64(tiny_folder, tmp_path, two_replicas):
    """Distributed training is exact: in float64 two replicas end with one device's weights to ~1e-12.
    In float32 the first stage differs by ~0.3 %: ReLU units whose pre-activation lies within
    rounding of 0 switch on or off with the replicas' summation order (a GELU network agrees to
    1e-4; `experiments/replica_agreement.py`), so float32 equality is no test of correctness."""
    results = []
    keras.config.set_dtype_policy("float64")
    try:
        for strategy in (tf.distribute.MirroredStrategy(["/cpu:0"]), two_replicas):
            devices = strategy.extended.worker_devices
            keras.utils.set_random_seed(0)
            # ε = 0 keeps the float32 attack out of the comparison; attacks under a strategy are in test_attacks.py.
            config = tiny_config(tiny_folder, tmp_path / str(len(devices)), method="pgdat", lam=0.5, epsilon_255=0.0)
            trainer = Trainer(config, strategy=strategy)
            assert trainer.model.synchronized_bn == (len(devices) > 1)
            trainer.train()
            results.append({v.path: np.asarray(v) for v in trainer.model.weights})
    finally:
        keras.config.set_dtype_policy("float32")
    one, two = results
    assert all(value.dtype == np.float64 for value in one.values())
    for path, value in one.items():
        np.testing.assert_allclose(two[path], value, rtol=1e-9, atol=1e-12, err_msg=path)


def _train_command(folder, run_dir):
    return [sys.executable, os.path.join(ROOT, "train", "oats.py"), "--method=oat", "--preset=cpu", "--model=resnet8",
            f"--data_dir={folder}", f"--run_dir={run_dir}", "--train_examples=0", "--validation_size=40",
            "--batch_size=16", "--epochs=3", "--eval_examples=20", "--eval_attack=fgsm", "--eval_every=3",
            "--watch_examples=10"]


def test_a_process_that_outlives_its_timeout_fails_naming_its_step():
    with pytest.raises(pytest.fail.Exception, match="sleeping did not finish within 1 s; its last output:\nawake"):
        run_step("sleeping", [sys.executable, "-c", "import sys, time; print('awake', file=sys.stderr, flush=True); "
                              "time.sleep(60)"], timeout=1)


@pytest.mark.slow
def test_killed_run_resumes_and_loses_nothing(tiny_folder, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    reference = run_step("uninterrupted training", _train_command(tiny_folder, tmp_path / "whole"), timeout=300,
                         env=env)
    assert reference.returncode == 0, reference.stderr[-2000:]
    # The estimate comes after the first timed steps and says which work it cannot count yet.
    assert "steps); epoch ends and validations join the estimate once the first is timed" in reference.stdout

    run_dir = tmp_path / "killed"
    process = subprocess.Popen(_train_command(tiny_folder, run_dir), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # The manager's state file names the checkpoint only once it is complete.
    while tf.train.latest_checkpoint(str(run_dir / "checkpoints")) is None:
        assert process.poll() is None and time.time() < deadline, "training ended before its first checkpoint"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # during epoch 2 (10 steps)
    process.wait()
    assert not (run_dir / "model.keras").exists()
    # The epoch's time is on disk before its checkpoint, so a kill right after the checkpoint loses nothing.
    assert len(json.loads((run_dir / "epoch_times.json").read_text())["wall_seconds"]) >= 1
    resumed = run_step("resumed training", _train_command(tiny_folder, run_dir), timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from"].endswith(("ckpt-1", "ckpt-2"))
    # Epoch times survive the kill: the completed epochs' times are kept, the killed epoch's is redone.
    for times in (summary["epoch_seconds"], summary["epoch_cpu_seconds"]):
        assert len(times) == 3 and all(t > 0 for t in times)
    # The held-out check of every epoch survives too: one row per epoch, at the most robust λ.
    assert [row["epoch"] for row in summary["held_out_checks"]] == [1, 2, 3]
    assert {(row["lambda"], row["n_clean"]) for row in summary["held_out_checks"]} == {(1.0, 10)}

    whole = keras.saving.load_model(tmp_path / "whole" / "model.keras")
    again = keras.saving.load_model(run_dir / "model.keras")
    for a, b in zip(whole.weights, again.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-4)


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_workers(command, run_dir, ports):
    """Two MultiWorkerMirroredStrategy processes (TF_CONFIG) on 127.0.0.1 training in `run_dir`."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    os.makedirs(run_dir, exist_ok=True)
    # Logs go to files: an undrained pipe would block one worker and stall the other in a collective.
    return [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(run_dir / f"worker{i}.log", "a"),
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                                  TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
        for i in range(2)
    ]


def _finish_workers(processes, run_dir, timeout, step):
    try:
        for p in processes:
            p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{step}: the two workers did not finish within {timeout} s")
    finally:
        for p in processes:
            p.kill()
    logs = "\n".join((run_dir / f"worker{i}.log").read_text()[-1500:] for i in range(2))
    assert [p.returncode for p in processes] == [0, 0], f"{step}:\n{logs}"


@pytest.fixture(scope="module")
def two_worker_run(tiny_folder, tmp_path_factory):
    """A three-epoch run of two worker processes, uninterrupted."""
    run_dir = tmp_path_factory.mktemp("two-workers")
    processes = _start_workers(_train_command(tiny_folder, run_dir), run_dir, [_free_port(), _free_port()])
    _finish_workers(processes, run_dir, timeout=300, step="uninterrupted two-worker run")
    return run_dir


def _weights(path):
    return [np.asarray(v) for v in keras.saving.load_model(path).weights]


@pytest.mark.slow
def test_two_worker_processes_train_in_step(two_worker_run):
    """MultiWorkerMirroredStrategy from TF_CONFIG: two processes on 127.0.0.1 end with equal weights."""
    summary = json.loads((two_worker_run / "summary.json").read_text())
    assert summary["replicas"] == 2
    chief = keras.saving.load_model(two_worker_run / "model.keras")
    keras.utils.set_random_seed(0)  # the trainer's initialization
    config = TrainConfig.from_dict(summary["config"])
    initial = build_run_model(config, num_classes=10)
    assert [(v.path, v.shape) for v in initial.weights] == [(v.path, v.shape) for v in chief.weights]
    assert any(not np.allclose(a, b) for a, b in zip(chief.weights, initial.weights))
    for a, b in zip(chief.weights, _weights(two_worker_run / "workers" / "worker-1" / "model.keras")):
        np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.slow
def test_killed_worker_resumes_both_from_their_last_common_checkpoint(tiny_folder, tmp_path, two_worker_run):
    """Worker 1 is SIGKILLed during epoch 3, having missed its epoch-2 save (its ckpt-2 is removed,
    as if it died between the chief's save and its own): both workers restarted with the same
    command resume from epoch 1, the newest checkpoint both hold, and end with the weights of
    the uninterrupted run."""
    command, ports = _train_command(tiny_folder, tmp_path), [_free_port(), _free_port()]
    processes = _start_workers(command, tmp_path, ports)
    chief_checkpoints, worker_checkpoints = tmp_path / "checkpoints", tmp_path / "workers" / "worker-1" / "checkpoints"
    deadline = time.time() + 300
    try:
        # The manager's state file names a checkpoint only once it is complete.
        while not (tf.train.latest_checkpoint(str(chief_checkpoints)) or "").endswith("ckpt-2"):
            assert all(p.poll() is None for p in processes), "a worker ended before the chief's epoch-2 checkpoint"
            assert time.time() < deadline, "no epoch-2 checkpoint within 300 s"
            time.sleep(0.05)
        processes[1].send_signal(signal.SIGKILL)
        processes[1].wait()
    finally:
        processes[0].kill()  # left alone it waits in a collective for the dead worker
        processes[0].wait()
    assert not (tmp_path / "model.keras").exists()
    for path in tf.io.gfile.glob(str(worker_checkpoints / "ckpt-2*")):
        os.remove(path)
    state = tf.train.get_checkpoint_state(str(worker_checkpoints))
    kept = [(path, stamp) for path, stamp in zip(state.all_model_checkpoint_paths, state.all_model_checkpoint_timestamps)
            if not path.endswith("ckpt-2")]
    tf.compat.v1.train.update_checkpoint_state(  # what the worker's manager wrote after its epoch-1 save
        str(worker_checkpoints), kept[-1][0], all_model_checkpoint_paths=[path for path, _ in kept],
        all_model_checkpoint_timestamps=[stamp for _, stamp in kept], last_preserved_timestamp=state.last_preserved_timestamp)

    _finish_workers(_start_workers(command, tmp_path, ports), tmp_path, timeout=300, step="restarted workers")
    for run_dir in (tmp_path, tmp_path / "workers" / "worker-1"):
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["resumed_from"].endswith("ckpt-1"), run_dir
    whole = _weights(two_worker_run / "model.keras")
    chief = _weights(tmp_path / "model.keras")
    for a, b, c in zip(whole, chief, _weights(tmp_path / "workers" / "worker-1" / "model.keras")):
        np.testing.assert_array_equal(b, c)
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_oat_on_one_lambda_takes_the_dedicated_models_training_step(tiny_folder, tmp_path, lam):
    """OAT with S = {λ} from the dedicated model's weights (identity FiLM: the same function) takes the
    same step as PGD-AT at λ: the same loss, the same updated weights and the same statistics on the
    route λ selects, and no statistics on the other. Later steps differ, since FiLM's parameters then act as a
    second copy of the norms' affine parameters; the cpu-budget comparison is in results/ablation/."""
    trainers = {}
    for kind, fields in (("dedicated", dict(method="pgdat", lam=lam)),
                         ("oat", dict(method="oat", lam_set=(lam,), eval_lambdas=(lam,), film_form="identity"))):
        keras.utils.set_random_seed(0)
        trainers[kind] = Trainer(tiny_config(tiny_folder, tmp_path / kind, **fields))
    route, other = ("adversarial", "clean") if lam else ("clean", "adversarial")
    oat_weights = {v.path.split("/", 1)[1]: v for v in trainers["oat"].model.weights}
    pairs = [(v, oat_weights[v.path.split("/", 1)[1].replace("shared_w", f"{route}_w")])
             for v in trainers["dedicated"].model.weights]
    for dedicated, oat in pairs:
        oat.assign(dedicated)
    untouched = {path: np.asarray(v).copy() for path, v in oat_weights.items() if f"/{other}_w" in path}
    batch = next(iter(trainers["dedicated"]._dataset(0)))
    losses = [float(trainers[kind]._train_step(batch, tf.constant(0, tf.int64))) for kind in ("dedicated", "oat")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for dedicated, oat in pairs:
        np.testing.assert_allclose(np.asarray(oat), np.asarray(dedicated), atol=1e-5, err_msg=oat.path)
    # The other route: statistics unchanged, affine parameters moved by the L2 weight decay alone.
    config = trainers["oat"].config
    for path, before in untouched.items():
        decayed = before if "moving" in path else before * (1 - config.learning_rate * config.weight_decay)
        np.testing.assert_allclose(np.asarray(oat_weights[path]), decayed, rtol=1e-6, err_msg=path)


@pytest.mark.slow
def test_film_learning_rate_scale_multiplies_only_film_updates(tiny_folder, tmp_path):
    updates = []
    for scale in (1.0, 5.0):
        keras.utils.set_random_seed(0)
        trainer = Trainer(tiny_config(tiny_folder, tmp_path / str(scale), film_form="identity", film_lr_scale=scale))
        before = [np.asarray(v).copy() for v in trainer.model.trainable_variables]
        trainer._train_step(next(iter(trainer._dataset(0))), tf.constant(0, tf.int64))
        updates.append({v.path: np.asarray(v) - b for v, b in zip(trainer.model.trainable_variables, before)})
    film = [path for path in updates[0] if "/film/" in path]
    assert film and any(np.abs(updates[0][path]).max() > 0 for path in film)
    for path, update in updates[0].items():
        expected = 5.0 * update if "/film/" in path else update
        np.testing.assert_allclose(updates[1][path], expected, rtol=1e-4, atol=1e-7, err_msg=path)


@pytest.mark.slow
def test_width_loss_sum_accumulates_every_width_gradient(tiny_folder, tmp_path):
    """Slimmable training's "sum" takes each width's whole gradient: without weight decay the first
    step (no momentum yet) moves every weight by len(widths) × the "mean" step."""
    steps = {}
    for width_loss in ("mean", "sum"):
        keras.utils.set_random_seed(0)
        trainer = Trainer(tiny_config(tiny_folder, tmp_path / width_loss, method="oats", widths=(0.5, 1.0),
                                      width_loss=width_loss, weight_decay=0.0))
        before = [np.asarray(v).copy() for v in trainer.model.trainable_variables]
        loss = float(trainer._train_step(next(iter(trainer._dataset(0))), tf.constant(0, tf.int64)))
        steps[width_loss] = loss, {v.path: np.asarray(v) - b for v, b in zip(trainer.model.trainable_variables, before)}
    np.testing.assert_allclose(steps["sum"][0], 2 * steps["mean"][0], rtol=1e-5)
    assert max(np.abs(u).max() for u in steps["mean"][1].values()) > 1e-4
    for path, update in steps["mean"][1].items():
        np.testing.assert_allclose(steps["sum"][1][path], 2 * update, rtol=1e-3, atol=1e-6, err_msg=path)


@pytest.mark.slow
def test_joint_forward_computes_the_same_loss_with_one_statistics_update(tiny_folder, tmp_path):
    """With ε = 0 the adversarial images are the clean ones, so one joint pass normalizes each route with
    the same batch statistics as the two separate passes: the same loss. BN_a's moving statistics then
    take one update instead of two: 0.1·μ against (1 − 0.9²)·μ from zero."""
    results = {}
    for joint in (False, True):
        keras.utils.set_random_seed(0)
        trainer = Trainer(tiny_config(tiny_folder, tmp_path / str(joint), joint_forward=joint, epsilon_255=0.0))
        loss = float(trainer._train_step(next(iter(trainer._dataset(0))), tf.constant(0, tf.int64)))
        mean = next(v for v in trainer.model.weights if v.path.endswith("stem_norm/bn/adversarial_w1_moving_mean"))
        results[joint] = loss, np.asarray(mean)
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
    np.testing.assert_allclose(results[True][1], results[False][1] * 0.1 / 0.19, rtol=1e-4, atol=1e-7)
    assert np.abs(results[True][1]).max() > 1e-3


@pytest.mark.slow
def test_lambda_one_samples_take_no_clean_pass(tiny_folder, tmp_path):
    """With S = {0, 1} the λ = 1 samples' clean term has weight 0, so they skip the clean pass. Against
    S = {0, 0.5} with ε = 0 (adversarial = clean images; identity FiLM: the same function for every λ)
    the loss is the same, and BN_a's moving statistics take one update instead of two: 0.1·μ against
    (1 − 0.9²)·μ from zero."""
    results = {}
    for lam_set in ((0.0, 1.0), (0.0, 0.5)):
        keras.utils.set_random_seed(0)
        trainer = Trainer(tiny_config(tiny_folder, tmp_path / str(lam_set[1]), lam_set=lam_set, eval_lambdas=lam_set,
                                      film_form="identity", epsilon_255=0.0))
        assert trainer.clean_rows == (trainer.num_clean if lam_set[1] == 1.0 else trainer.local_batch)
        loss = float(trainer._train_step(next(iter(trainer._dataset(0))), tf.constant(0, tf.int64)))
        mean = next(v for v in trainer.model.weights if v.path.endswith("stem_norm/bn/adversarial_w1_moving_mean"))
        results[lam_set[1]] = loss, np.asarray(mean)
    np.testing.assert_allclose(results[1.0][0], results[0.5][0], rtol=1e-5)
    np.testing.assert_allclose(results[1.0][1], results[0.5][1] * 0.1 / 0.19, rtol=1e-4, atol=1e-7)
    assert np.abs(results[1.0][1]).max() > 1e-3


@pytest.mark.slow
def test_fine_tuning_starts_from_another_runs_weights(tiny_folder, tmp_path):
    keras.utils.set_random_seed(0)
    source = Trainer(tiny_config(tiny_folder, tmp_path / "source"))
    source.train()
    tuned = Trainer(tiny_config(tiny_folder, tmp_path / "tuned", init_from=str(tmp_path / "source"),
                                fake_quantize=True, learning_rate=0.01))
    assert all(np.array_equal(a, b) for a, b in zip(tuned.model.weights, source.model.weights))
    assert tuned.describe().startswith(f"quantization-aware fine-tuning OAT from {tmp_path / 'source'} on cifar10")
    summary = tuned.train()
    after = tuned.model.trainable_variables
    assert any(not np.allclose(a, b) for a, b in zip(source.model.trainable_variables, after))
    assert all(np.isfinite(np.asarray(v)).all() for v in after)
    assert summary["config"]["init_from"] == str(tmp_path / "source")
    # A rerun resumes from the fine-tune's own checkpoint, not the source's.
    assert Trainer(tiny_config(tiny_folder, tmp_path / "tuned", init_from=str(tmp_path / "source"),
                               fake_quantize=True, learning_rate=0.01)).resumed_from is not None
    with pytest.raises(ValueError, match="different fake_quantize"):
        Trainer(tiny_config(tiny_folder, tmp_path / "tuned", init_from=str(tmp_path / "source")))
    with pytest.raises(ValueError, match=r"trained a different network: width_multiplier=0.25 there, 0.5 here"):
        Trainer(tiny_config(tiny_folder, tmp_path / "other", init_from=str(tmp_path / "source"), width_multiplier=0.5))
    with pytest.raises(FileNotFoundError, match="is not a training run with a checkpoint"):
        Trainer(tiny_config(tiny_folder, tmp_path / "other", init_from=str(tmp_path / "missing")))
    assert not (tmp_path / "other").exists()  # refused before anything was written
    with pytest.raises(ValueError, match="init_from names the run directory itself"):
        tiny_config(tiny_folder, tmp_path / "tuned", init_from=str(tmp_path / "tuned")).validate()
