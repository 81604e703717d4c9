"""One trainer for OAT, OATS, PGD-AT and PGD-ATS under tf.distribute, with checkpoints and TensorBoard."""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from oat_tf.attacks import build_attack
from oat_tf.config import NETWORK_CONDITIONING, TrainConfig
from oat_tf.data import DATASETS, load_split
from oat_tf.evaluate import evaluate
from oat_tf.input_pipeline import AUGMENTED, training_dataset
from oat_tf.lambda_sampling import LambdaSampler
from oat_tf.models.zoo import build_model
from oat_tf.provenance import provenance, read_json, write_atomic, write_json
from oat_tf.run_clock import LONG_RUN_S, RunClock, format_duration
from oat_tf.tensorboard_layout import validation_tag, write_run_overview
from oat_tf.tradeoff_table import tradeoff_table

# Fields that define the trained network: a resumed run must agree on them.
MODEL_FIELDS = ("method", "dataset", "model", "width_multiplier", "normal_bn", "encoding", "lam_set",
                "widths") + NETWORK_CONDITIONING
# ... and on how it trains from its first step.
RESUME_FIELDS = MODEL_FIELDS + ("init_from", "fake_quantize")


def default_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG is set, else MirroredStrategy over the local GPUs (or the CPU)."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy([d.name for d in gpus] or ["/cpu:0"])


def checkpoint_variables(model):
    """Every model variable by its path. tf.train.Checkpoint's own traversal of a Keras 3 model
    misses variables held in lists (the blocks, the per-width BN statistics)."""
    return {v.path.replace("/", "."): v for v in model.weights}


def checkpoint_number(path):
    """The epoch a trainer checkpoint holds: its save number (…/ckpt-<epoch>)."""
    return int(path.rsplit("-", 1)[1])


def last_common_checkpoint(strategy, manager, epochs):
    """The newest epoch whose checkpoint every replica's worker holds (0: start afresh).

    Each MultiWorker worker saves its own checkpoints; one killed before its last save holds
    an older epoch than the others, and all must resume from the same one to stay in step.
    """
    held = np.zeros(epochs + 1, np.float32)
    held[0] = 1.0
    for path in manager.checkpoints:
        epoch = checkpoint_number(path)
        if epoch > epochs:
            raise ValueError(f"{path!r} holds epoch {epoch}, beyond this run's {epochs} epochs; "
                             "resume with at least that many epochs or use another run_dir.")
        held[epoch] = 1.0

    @tf.function(autograph=False)  # no Python control flow to convert
    def replicas_holding():
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(held)), axis=None)

    return int(np.flatnonzero(replicas_holding().numpy() == strategy.num_replicas_in_sync)[-1])


def build_run_model(config, num_classes, synchronized_bn=False):
    """The network a TrainConfig describes, freshly initialized."""
    return build_model(
        config.model, config.variant, num_classes=num_classes, image_size=DATASETS[config.dataset][1],
        width_multiplier=config.width_multiplier, widths=config.model_widths, encoding=config.encoding,
        lam_grid=config.lam_set, synchronized_bn=synchronized_bn, fake_quantize=config.fake_quantize,
        **{name: getattr(config, name) for name in NETWORK_CONDITIONING},
    )


# What reading a missing-variable, truncated or corrupt checkpoint raises.
UNREADABLE_CHECKPOINT = (AssertionError, ValueError, IndexError, tf.errors.OpError)


def run_files(run_dir):
    """(config.json path, latest checkpoint path) of a training run directory, or FileNotFoundError."""
    config_path = os.path.join(run_dir, "config.json")
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if not os.path.isfile(config_path) or latest is None:
        raise FileNotFoundError(f"{run_dir!r} is not a training run with a checkpoint "
                                "(expected config.json and checkpoints/ written by train/oats.py).")
    return config_path, latest


def restore_model_variables(model, checkpoint_path, description):
    """Reads every variable of `model` from a trainer checkpoint, or a ValueError naming `description`."""
    try:
        status = tf.train.Checkpoint(model_variables=checkpoint_variables(model)).read(checkpoint_path)
        status.expect_partial().assert_existing_objects_matched()
    except UNREADABLE_CHECKPOINT as error:
        raise ValueError(f"checkpoint {checkpoint_path!r} is unreadable or does not hold {description}: "
                         f"{str(error)[:300]}") from None


def load_run(run_dir):
    """(model at the run's latest checkpoint, its TrainConfig, class names) of a training run
    directory, or of a preset directory (`oat_tf.presets`).

    Raises FileNotFoundError when the directory holds no run or no checkpoint, and ValueError
    when the checkpoint does not fit the network the run's config.json describes.
    """
    from oat_tf.presets import from_preset, is_preset, preset_metadata

    if is_preset(run_dir):
        metadata = preset_metadata(run_dir)
        return from_preset(run_dir), TrainConfig.from_dict(metadata["train_config"]), metadata["class_names"]
    config_path, latest = run_files(run_dir)
    config = TrainConfig.from_dict(read_json(config_path))
    class_names = read_json(os.path.join(run_dir, "classes.json"))
    model = build_run_model(config, len(class_names))
    restore_model_variables(model, latest, f"the {config.model}/{config.variant} network described by {config_path!r}")
    return model, config, class_names


def initialization_checkpoint(config):
    """The last checkpoint of run `config.init_from` (fine-tuning), checked to hold the network `config`
    describes; FileNotFoundError or ValueError otherwise."""
    config_path, latest = run_files(config.init_from)
    source, current = TrainConfig.stored_dict(read_json(config_path)), config.to_dict()
    changed = [k for k in MODEL_FIELDS if source[k] != current[k]]
    if changed:
        raise ValueError(f"init_from {config.init_from!r} trained a different network: "
                         + ", ".join(f"{k}={source[k]!r} there, {current[k]!r} here" for k in changed) + ".")
    return latest


def worker_run_dir(run_dir, strategy):
    """Where this process writes: `run_dir` for the chief (or a single process), else
    run_dir/workers/<task>-<index>. Every MultiWorker worker must save its own checkpoints;
    they hold the same values as the chief's."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return run_dir
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief):
        return run_dir
    return os.path.join(run_dir, "workers", f"{resolver.task_type}-{resolver.task_id}")


def _check_writable(run_dir):
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"run directory {run_dir!r} is not writable: {error}.") from None


def _check_resume(config, run_dir):
    path = os.path.join(run_dir, "config.json")
    if os.path.exists(path):
        stored = TrainConfig.stored_dict(read_json(path))
        current = config.to_dict()
        changed = [k for k in RESUME_FIELDS if stored[k] != current[k]]
        if changed:
            raise ValueError(
                f"{run_dir!r} holds a run with a different {', '.join(changed)} "
                f"({', '.join(f'{k}={stored[k]!r}' for k in changed)}); use another run_dir."
            )
    write_json(path, config.to_dict())


class Trainer:
    """Trains `config` in `config.run_dir`, resuming from its last checkpoint if there is one.

    Per step and width: adversarial examples for the λ > 0 samples (inference mode,
    each sample's own λ, so through BN_a), then the loss mean_i (1−λᵢ)·CE(f(xᵢ, λᵢ)) +
    λᵢ·CE(f(x_advᵢ, λᵢ)) in training mode; OATS/PGD-ATS sum or average it over the widths
    (`width_loss`). A MultiWorker run resumes from the newest checkpoint every worker holds.
    SGD with momentum, cosine learning rate, weight decay as L2 in the gradient (PyTorch).
    """

    def __init__(self, config: TrainConfig, strategy=None):
        self._started = time.perf_counter()
        self.config = config.validate()
        self.strategy = strategy or default_strategy()
        initial = initialization_checkpoint(config) if config.init_from else None  # checked before writing
        self.run_dir = worker_run_dir(config.run_dir, self.strategy)
        _check_writable(self.run_dir)
        _check_resume(config, self.run_dir)
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise ValueError(f"batch_size {config.batch_size} must divide by the {replicas} replicas.")
        self.local_batch = config.batch_size // replicas

        images, labels, self.class_names = load_split(
            config.dataset, "train", config.data_dir or None, validation_size=config.validation_size, seed=config.seed
        )
        if config.train_examples:
            images, labels = images[: config.train_examples], labels[: config.train_examples]
        self.train_images, self.train_labels = images, labels
        val_images, val_labels, _ = load_split(
            config.dataset, "val", config.data_dir or None, validation_size=config.validation_size, seed=config.seed
        )
        write_json(os.path.join(self.run_dir, "classes.json"), list(self.class_names))
        shown = max(config.eval_examples, config.watch_examples)
        self.val_images = val_images[:shown].astype(np.float32) / 255.0
        self.val_labels = val_labels[:shown]
        self.steps_per_epoch = len(labels) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(labels)} training images make no batch of {config.batch_size}.")

        epsilon = config.epsilon_255 / 255.0
        self.attack = build_attack(config.train_attack, epsilon, config.xla)
        self.eval_attack = config.eval_attack
        if config.conditioned:
            self.sampler = LambdaSampler(config.lam_set, self.local_batch, config.continuous_lam, config.clean_share)
            self.num_clean = self.sampler.num_clean
            self.clean_rows = self.sampler.clean_rows
        else:
            self.sampler = None
            self.num_clean = self.local_batch if config.lam == 0 else 0
            self.clean_rows = 0 if config.lam == 1.0 else self.local_batch

        keras.utils.set_random_seed(config.seed)  # the same command builds the same initial network
        with self.strategy.scope():
            self.model = build_run_model(config, len(self.class_names), synchronized_bn=replicas > 1)
            schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * self.steps_per_epoch)
            self.optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum)
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Randomness (order, augmentation, λ draws, attack starts) is stateless, keyed by
        # (seed, epoch, step, sample id): restoring the epoch and the optimizer's step restores it.
        checkpoint = tf.train.Checkpoint(
            model_variables=checkpoint_variables(self.model), optimizer=self.optimizer, epoch=self.epoch
        )
        # Two checkpoints kept: a worker killed between the chief's save and its own is one epoch behind.
        self.manager = tf.train.CheckpointManager(checkpoint, os.path.join(self.run_dir, "checkpoints"), max_to_keep=2)
        common = last_common_checkpoint(self.strategy, self.manager, config.epochs)
        self.resumed_from = os.path.join(self.manager.directory, f"ckpt-{common}") if common else None
        if self.resumed_from:
            try:
                checkpoint.restore(self.resumed_from)
            except UNREADABLE_CHECKPOINT as error:
                raise ValueError(f"cannot resume from {self.resumed_from!r} ({str(error)[:200]}); move the "
                                 "run directory's checkpoints/ aside to start over.") from None
        if initial and not self.resumed_from:
            restore_model_variables(self.model, initial, f"the network of init_from {config.init_from!r}")
        self.writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "tensorboard"))
        write_run_overview(self.writer, self.model.widths, config.eval_attack, config.to_dict())
        # Per-variable learning-rate factors (SGD with momentum is linear in the gradient): FiLM's MLPs
        # may learn faster than the shared weights.
        self.lr_scales = [config.film_lr_scale if "/film/" in v.path else 1.0 for v in self.model.trainable_variables]
        self._train_step = tf.function(self._distributed_step)

    def _replica_step(self, images, labels, ids, step):
        config = self.config
        replica = tf.distribute.get_replica_context()
        replica_id = tf.cast(replica.replica_id_in_sync_group, tf.int64)
        if self.sampler is not None:
            lam = self.sampler(tf.stack([tf.cast(config.seed, tf.int64), step * 1024 + replica_id]))
        else:
            lam = tf.fill([self.local_batch], tf.constant(config.lam, tf.float32))
        lam = tf.cast(lam, self.model.compute_dtype)  # float64 under a float64 Keras dtype policy
        n = self.num_clean
        seeds = tf.stack([tf.fill(tf.shape(ids), tf.cast(step, tf.int32) + config.seed * 7919), ids], axis=1)
        variables = self.model.trainable_variables
        widths = self.model.widths
        # Only the samples with (1 − λ) > 0 take the clean pass: a zero-weight pass costs a forward and
        # backward pass and would also move BN_a's moving statistics.
        c = self.clean_rows
        padding = tf.zeros([self.local_batch - c], lam.dtype)
        total_grads = [tf.zeros_like(v) for v in variables]
        total_loss = 0.0
        divisor = config.batch_size * (len(widths) if config.width_loss == "mean" else 1)
        for width in widths:
            if n < self.local_batch:
                x_adv = self.attack(self.model, images[n:], labels[n:], lam[n:], width=width, seeds=seeds[n:])
            with tf.GradientTape() as tape:
                per_sample = tf.zeros([self.local_batch], lam.dtype)
                if c and n < self.local_batch and config.joint_forward:
                    # One pass over the clean and adversarial images: BN_a normalizes both with one set
                    # of batch statistics, as its moving statistics (their mixture) do at inference.
                    both = self.model({"image": tf.concat([images[:c], x_adv], 0),
                                       "lam": tf.concat([lam[:c], lam[n:]], 0)}, width=width, training=True)
                    logits, logits_adv = both[:c], both[c:]
                else:
                    if c:
                        logits = self.model({"image": images[:c], "lam": lam[:c]}, width=width, training=True)
                    if n < self.local_batch:
                        logits_adv = self.model({"image": x_adv, "lam": lam[n:]}, width=width, training=True)
                if c:
                    clean_loss = (1.0 - lam[:c]) * keras.losses.sparse_categorical_crossentropy(labels[:c], logits, True)
                    per_sample += tf.concat([clean_loss, padding], axis=0)
                if n < self.local_batch:
                    adv_loss = lam[n:] * keras.losses.sparse_categorical_crossentropy(labels[n:], logits_adv, True)
                    per_sample += tf.concat([tf.zeros([n], lam.dtype), adv_loss], axis=0)
                loss = tf.reduce_sum(per_sample) / divisor
            grads = tape.gradient(loss, variables)
            total_grads = [t if g is None else t + g for t, g in zip(total_grads, grads)]
            total_loss += loss
        # L2 weight decay in the gradient; the optimizer sums gradients over replicas.
        decay = config.weight_decay / replica.num_replicas_in_sync
        total_grads = [g + decay * v for g, v in zip(total_grads, variables)]
        total_grads = [g if scale == 1.0 else g * scale for g, scale in zip(total_grads, self.lr_scales)]
        self.optimizer.apply_gradients(zip(total_grads, variables))
        return total_loss

    def _distributed_step(self, batch, step):
        images, labels, ids = batch
        losses = self.strategy.run(self._replica_step, args=(images, labels, ids, step))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def _dataset(self, epoch):
        dataset = training_dataset(self.train_images, self.train_labels, self.config.batch_size, epoch,
                                   self.config.seed, AUGMENTED[self.config.dataset])
        return self.strategy.experimental_distribute_dataset(dataset)

    def _should_evaluate(self, epoch):
        epochs = self.config.epochs
        return epoch == epochs or epoch % self.config.eval_every == 0

    def validate(self):
        """SA/RA on the validation images per validation λ and width (never the test split)."""
        lambdas = self.config.eval_lambdas if self.config.conditioned else (self.config.lam,)
        count = self.config.eval_examples
        return evaluate(self.model, self.val_images[:count], self.val_labels[:count], lambdas, self.model.widths,
                        [self.eval_attack], self.config.epsilon_255 / 255.0, batch_size=250,
                        seed=self.config.seed, jit_compile=self.config.xla, progress=False)

    def watch(self, epoch):
        """SA and RA (the validation attack) at the most robust λ and full width on the first
        `watch_examples` validation images, after every epoch: single-step training attacks can
        overfit catastrophically (Wong et al. 2020), which shows as RA collapsing within an epoch."""
        config = self.config
        lam = max(config.lam_set) if config.conditioned else config.lam
        count = config.watch_examples
        [row] = evaluate(self.model, self.val_images[:count], self.val_labels[:count], [lam], [1.0],
                         [self.eval_attack], config.epsilon_255 / 255.0, batch_size=250, seed=config.seed,
                         jit_compile=config.xla, progress=False)
        row = dict(epoch=epoch, **{k: row[k] for k in ("lambda", "sa", "ra", "n_clean")})
        with self.writer.as_default(step=epoch):
            tf.summary.scalar("watch/sa", row["sa"])
            tf.summary.scalar(f"watch/ra_{self.eval_attack}", row["ra"])
        print(f"\nheld-out check after epoch {epoch}: λ = {lam:g}, width 1, {count} validation images: "
              f"SA {100 * row['sa']:.1f} %, RA ({self.eval_attack}) {100 * row['ra']:.1f} %", flush=True)
        return row

    def _log_evaluation(self, rows, epoch):
        from oat_tf.plots import plot_tradeoff

        with self.writer.as_default(step=epoch):
            for row in rows:
                tf.summary.scalar(validation_tag("val_sa", row["lambda"], row["width"]), row["sa"])
                tf.summary.scalar(validation_tag(f"val_ra_{row['attack']}", row["lambda"], row["width"]), row["ra"])
            path = os.path.join(self.run_dir, "sa_ra_val.png")
            plot_tradeoff(rows, path, title=f"validation SA–RA, epoch {epoch}")
            image = tf.io.decode_png(tf.io.read_file(path))[None]
            tf.summary.image("sa_ra_tradeoff", image)

    def describe(self):
        """What this run trains, in one line."""
        config = self.config
        device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU, no GPU"
        widths = ", ".join(f"{w:g}" for w in self.model.widths)
        how = "quantization-aware " if config.fake_quantize else ""
        origin = f" from {config.init_from}" if config.init_from else ""
        return (f"{how}{'fine-tuning' if config.init_from else 'training'} {config.method.upper()}{origin} on "
                f"{config.dataset}: {config.model} ×{config.width_multiplier:g} "
                f"(widths {widths}), {config.epochs} epochs × {self.steps_per_epoch} steps of {config.batch_size} "
                f"images ({len(self.train_labels)} training images), training attack {config.train_attack}, "
                f"{self.strategy.num_replicas_in_sync} replica(s) on {device}; validation on "
                f"{min(config.eval_examples, len(self.val_labels))} images under {config.eval_attack}")

    def estimate(self, clock):
        """The run's estimated training time after the first timed steps, with a hint for long CPU runs."""
        left = clock.remaining_seconds()
        text = (f"estimated training time left: {format_duration(left)} ({clock.seconds_per_step:.2f} s per step, "
                f"{clock.total_steps - clock.steps_done} steps)")
        untimed = clock.untimed()
        if untimed:
            text += f"; {' and '.join(untimed)} join the estimate once the first is timed"
        if left > LONG_RUN_S and not tf.config.list_physical_devices("GPU"):
            text += ("\nthis is a long run for a machine without a GPU; `--preset=cpu` trains a small model in "
                     "about 15 minutes (Ctrl-C stops; the same command resumes from the last epoch)")
        return text

    def _history(self, start_epoch):
        """(epoch times, held-out check rows) of the epochs before `start_epoch`, kept across resumed
        invocations. Times are the wall-clock and process CPU seconds of each epoch's training steps;
        CPU time is what a run costs when other work shares the machine."""
        times_path, watch_path = (os.path.join(self.run_dir, f) for f in ("epoch_times.json", "watch.json"))
        epoch_times = {"wall_seconds": [], "cpu_seconds": []}
        if os.path.exists(times_path):
            epoch_times = {k: v[:start_epoch] for k, v in read_json(times_path).items()}
        watched = [r for r in read_json(watch_path) if r["epoch"] <= start_epoch] if os.path.exists(watch_path) else []
        return epoch_times, watched

    def train(self, on_epoch_end=None):
        """Runs the remaining epochs; returns the summary dict also written to run_dir/summary.json."""
        config = self.config
        start_epoch = int(self.epoch.numpy())
        epoch_times, watched = self._history(start_epoch)
        if config.watch_examples and start_epoch and not any(r["epoch"] == start_epoch for r in watched):
            # Killed between the restored checkpoint and its check: the restored weights are that epoch's.
            watched.append(self.watch(start_epoch))
        clock = RunClock(config.epochs * self.steps_per_epoch, start_epoch * self.steps_per_epoch,
                         epoch_ends=max(config.epochs - start_epoch - 1, 0),
                         validations=sum(map(self._should_evaluate, range(start_epoch + 1, config.epochs + 1))))
        print(self.describe(), flush=True)
        if start_epoch < config.epochs:
            print("compiling the training step…", flush=True)
        rows, self._epoch_end = [], None
        for epoch in range(start_epoch, config.epochs):
            started, started_cpu = time.perf_counter(), time.process_time()
            self._train_epoch(epoch, clock)
            epoch_times["wall_seconds"].append(round(time.perf_counter() - started, 1))
            epoch_times["cpu_seconds"].append(round(time.process_time() - started_cpu, 1))
            self._epoch_end = (time.perf_counter(), 0.0)  # (when the epoch's steps ended, validation seconds since)
            self.epoch.assign(epoch + 1)
            # Times first: a kill between the two writes then resumes from the previous checkpoint, whose
            # epochs the times file still covers (the other order lost the epoch's time).
            write_json(os.path.join(self.run_dir, "epoch_times.json"), epoch_times)
            self.manager.save(checkpoint_number=epoch + 1)
            if config.watch_examples:
                watched.append(self.watch(epoch + 1))
                write_json(os.path.join(self.run_dir, "watch.json"), watched)
            if self._should_evaluate(epoch + 1):
                rows = self._validate_and_log(epoch + 1, clock)
            self.writer.flush()
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1)
        if not rows:
            rows = self.validate()
        return self._finish(rows, epoch_times, watched)

    def _train_epoch(self, epoch, clock):
        """One epoch's training steps, with the progress bar, the estimate and the step summaries."""
        config = self.config
        print(f"epoch {epoch + 1}/{config.epochs}", flush=True)
        bar = keras.utils.Progbar(self.steps_per_epoch, stateful_metrics=["loss", "images/s", "run min left"],
                                  unit_name="step")
        for i, batch in enumerate(self._dataset(epoch)):
            step = tf.constant(epoch * self.steps_per_epoch + i, tf.int64)
            tick = time.perf_counter()
            if i == 0 and self._epoch_end is not None:  # the previous epoch's end, up to this first batch
                ended, validating = self._epoch_end
                clock.epoch_ends.record(tick - ended - validating)
            loss = float(self._train_step(batch, step))
            seconds = time.perf_counter() - tick
            speed = config.batch_size / seconds
            clock.record(seconds)
            if clock.announcement_due():
                print(f"\n{self.estimate(clock)}", flush=True)
            left = clock.remaining_seconds()
            bar.update(i + 1, [("loss", loss), ("images/s", speed)]
                       + ([("run min left", left / 60)] if left is not None else []))
            with self.writer.as_default(step=int(step)):
                tf.summary.scalar("train/loss", loss)
                tf.summary.scalar("train/learning_rate", float(self.optimizer.learning_rate))
                tf.summary.scalar("train/images_per_s", speed)

    def _validate_and_log(self, epoch, clock):
        """Validation after `epoch`: timed for the estimate, logged to TensorBoard, printed."""
        started = time.perf_counter()
        rows = self.validate()
        self._log_evaluation(rows, epoch)
        print(f"\nvalidation after epoch {epoch}/{self.config.epochs} "
              f"({rows[0]['n_clean']} images):\n{tradeoff_table(rows)}", flush=True)
        seconds = time.perf_counter() - started
        clock.validations.record(seconds)
        ended, validating = self._epoch_end
        self._epoch_end = (ended, validating + seconds)
        return rows

    def _finish(self, rows, epoch_times, watched):
        config = self.config
        model_path = os.path.join(self.run_dir, "model.keras")
        write_atomic(model_path, self.model.save)
        summary = provenance(
            config=config.to_dict(), replicas=self.strategy.num_replicas_in_sync,
            data=f"{config.dataset} validation split" + (" (JPEG copy)" if config.data_dir else ""),
            resumed_from=self.resumed_from, epoch_seconds=epoch_times["wall_seconds"],
            epoch_cpu_seconds=epoch_times["cpu_seconds"],
            # This invocation's wall clock, from loading the data to the saved model (validations included).
            invocation_seconds=round(time.perf_counter() - self._started, 1),
            validation=rows, held_out_checks=watched,
        )
        write_json(os.path.join(self.run_dir, "summary.json"), summary)
        return summary
