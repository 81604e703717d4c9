"""L∞ attacks on λ-conditioned, slimmable models: FGSM, N-FGSM, PGD (CE or CW loss), MI-FGSM, APGD-CE, APGD-T.

Every attack is called as ``attack(model, images, labels, lam, width=1.0, seeds=None)``
and returns adversarial images within ε of `images` (L∞) and inside [0, 1]. The model
runs in inference mode with each sample's own λ (and so its own BN route) at `width`;
only gradients with respect to the input are taken. `seeds` (B, 2) int32 gives each
sample its own random start, so results do not depend on batching or on how a
`tf.distribute` strategy splits the batch; by default a sample's seed is its index.
Attack loops run as one `tf.function`, XLA-compiled with `jit_compile=True` (off by default:
on a 2-core CPU with TF 2.21 XLA made PGD slower, see the README).
"""

import dataclasses

import numpy as np
import tensorflow as tf

DEFAULT_EPSILON = 8 / 255


def cross_entropy(logits, labels, targets=None):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def _true_and_best_other(logits, labels):
    true = tf.gather(logits, labels, batch_dims=1)
    others = tf.where(tf.one_hot(labels, tf.shape(logits)[1]) > 0, -np.inf, logits)
    return true, tf.reduce_max(others, axis=1)


def cw_margin(logits, labels, targets=None):
    """Carlini–Wagner margin max_{j≠y} z_j − z_y (positive when misclassified)."""
    true, other = _true_and_best_other(logits, labels)
    return other - true


def dlr(logits, labels, targets=None):
    """Difference of logits ratio (Croce & Hein 2020), untargeted; `targets` given: the targeted form."""
    ranked = tf.sort(logits, axis=1, direction="DESCENDING")
    true, other = _true_and_best_other(logits, labels)
    if targets is None:
        return -(true - other) / (ranked[:, 0] - ranked[:, 2] + 1e-12)
    target = tf.gather(logits, targets, batch_dims=1)
    return -(true - target) / (ranked[:, 0] - 0.5 * (ranked[:, 2] + ranked[:, 3]) + 1e-12)


LOSSES = {"ce": cross_entropy, "cw": cw_margin, "dlr": dlr}


def project(x_adv, images, epsilon):
    """Projection onto the ε-ball around `images` intersected with [0, 1]."""
    return tf.clip_by_value(tf.clip_by_value(x_adv, images - epsilon, images + epsilon), 0.0, 1.0)


def uniform_noise(seeds, shape):
    """Per-sample uniform noise in [−1, 1]: sample i depends on seeds[i] only.

    Drawn outside XLA: XLA's stateless RNG gives other numbers than TensorFlow's kernels.
    """
    return tf.map_fn(
        lambda seed: tf.random.stateless_uniform(shape[1:], seed, -1.0, 1.0),
        seeds,
        fn_output_signature=tf.float32,
    )


def default_seeds(batch_size, base=0):
    return tf.stack([tf.fill([batch_size], tf.cast(base, tf.int32)), tf.range(batch_size, dtype=tf.int32)], axis=1)


class Attack:
    """Base class: compiles and caches one attack function per (model, width).

    Subclasses implement `perturb(logits_of, images, labels, noise)`, where `noise` holds
    `random_starts` uniform [−1, 1] draws of the images' shape, one per random start.
    """

    jit_compile = False
    random_starts = 1

    def __call__(self, model, images, labels, lam, width=1.0, seeds=None):
        images = tf.convert_to_tensor(images, tf.float32)
        labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
        lam = tf.reshape(tf.cast(tf.convert_to_tensor(lam), tf.float32), [-1])
        seeds = default_seeds(tf.shape(images)[0]) if seeds is None else tf.cast(seeds, tf.int32)
        starts = [uniform_noise(seeds + [0, 7919 * r], tf.shape(images)) for r in range(self.random_starts)]
        noise = tf.stack(starts) if starts else tf.zeros(tf.concat([[0], tf.shape(images)], 0))
        return self.compiled(model, width)(images, labels, lam, noise)

    def compiled(self, model, width):
        # Keyed by the model object itself (not its id, which a new model may reuse).
        cache = self.__dict__.setdefault("_compiled", {})
        key = (model, float(width))
        if key not in cache:

            def run(images, labels, lam, noise):
                def logits_of(x):
                    return model({"image": x, "lam": lam}, width=width, training=False)

                return self.perturb(logits_of, images, labels, noise)

            cache[key] = tf.function(run, jit_compile=self.jit_compile, reduce_retracing=True)
        return cache[key]

    def _check_loss(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown attack loss {self.loss!r}; choose one of {list(LOSSES)}.")

    @staticmethod
    def loss_and_gradient(logits_of, x, labels, loss_fn, targets=None):
        """Per-sample loss and its gradient with respect to the input only (no weight gradients)."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            logits = logits_of(x)
            loss = loss_fn(logits, labels, targets)
        return loss, tape.gradient(loss, x), logits


@dataclasses.dataclass(eq=False)
class LinfPGD(Attack):
    """PGD (Madry et al. 2018): random start in the ε-ball, `steps` signed-gradient steps, projection after each.

    `momentum` > 0 gives MI-FGSM (Dong et al. 2018): the step follows the sign of an
    accumulated L1-normalized gradient. FGSM is one step of size ε without random start.
    `start_scale` scales the random start's range (k·ε) and `ball=False` keeps the result
    unprojected onto the ε-ball (only clipped to [0, 1]): with k = 2 and one step of ε this
    is N-FGSM (de Jorge et al. 2022), a training attack that avoids FGSM's catastrophic
    overfitting at no extra cost.
    """

    epsilon: float = DEFAULT_EPSILON
    steps: int = 7
    step_size: float = 2 / 255
    random_start: bool = True
    loss: str = "ce"
    momentum: float = 0.0
    start_scale: float = 1.0
    ball: bool = True
    jit_compile: bool = False

    def __post_init__(self):
        self._check_loss()
        if self.epsilon < 0 or self.steps < 0 or self.step_size < 0 or self.start_scale < 0:
            raise ValueError("epsilon, steps, step_size and start_scale must be non-negative.")

    @property
    def random_starts(self):
        return 1 if self.random_start else 0  # FGSM and MI-FGSM draw no noise

    def perturb(self, logits_of, images, labels, noise):
        loss_fn = LOSSES[self.loss]
        radius = self.epsilon if self.ball else np.inf
        x = images
        if self.random_start:
            x = project(images + self.start_scale * self.epsilon * noise[0], images, radius)
        velocity = tf.zeros_like(images)
        # A Python loop: unrolled, since XLA runs a while loop around the model 7× slower on CPU.
        for _ in range(self.steps):
            _, grad, _ = self.loss_and_gradient(logits_of, x, labels, loss_fn)
            if self.momentum:
                l1 = tf.reduce_mean(tf.abs(grad), axis=[1, 2, 3], keepdims=True)
                velocity = self.momentum * velocity + grad / (l1 + 1e-12)
                grad = velocity
            x = project(x + self.step_size * tf.sign(grad), images, radius)
        return x


def _apgd_checkpoints(steps):
    """Iterations where APGD checks its step size, and the window length at each (Croce & Hein 2020)."""
    window, window_min, decrement = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    check, length, counter = np.zeros(steps, bool), np.ones(steps, "int32"), 0
    for i in range(steps):
        counter += 1
        if counter == window:
            check[i], length[i] = True, window
            window, counter = max(window - decrement, window_min), 0
    return check, length


@dataclasses.dataclass(eq=False)
class APGD(Attack):
    """Auto-PGD (Croce & Hein 2020, L∞), following the reference AutoAttack implementation.

    Step size starts at 2ε and is halved per sample at checkpoints where the loss
    oscillated (< 75 % of the steps in the window increased it) or did not improve
    since the last checkpoint, restarting from the best point; steps use momentum 0.75.
    `loss="ce"` is APGD-CE; `targets` > 0 runs APGD-T: the targeted DLR loss against
    each of the `targets` highest-scoring wrong classes in turn. Returns, per sample,
    a misclassified point if one was found, else the last start's best point.
    """

    epsilon: float = DEFAULT_EPSILON
    steps: int = 100
    loss: str = "ce"
    targets: int = 0
    jit_compile: bool = False

    def __post_init__(self):
        self._check_loss()
        if self.steps < 1 or self.targets < 0:
            raise ValueError("APGD needs steps ≥ 1 and targets ≥ 0.")

    @property
    def random_starts(self):
        return max(1, self.targets)

    def perturb(self, logits_of, images, labels, noise):
        if not self.targets:
            return self._single_run(logits_of, images, labels, noise[0], None)[0]
        ranking = tf.argsort(logits_of(images), axis=1, direction="DESCENDING")
        best, fooled = images, tf.zeros_like(labels, tf.bool)
        for t in range(self.targets):
            # Targets: the 2nd, 3rd, … highest-scoring classes on the clean input.
            targets = ranking[:, min(t + 1, ranking.shape[1] - 1)]
            x, success = self._single_run(logits_of, images, labels, noise[t], targets)
            best = tf.where(fooled[:, None, None, None], best, x)  # the first success is kept
            fooled = fooled | success
        return best

    def _single_run(self, logits_of, images, labels, noise, targets):
        eps, steps = self.epsilon, self.steps
        loss_fn = dlr if targets is not None else LOSSES[self.loss]
        batch_shape = tf.shape(labels)
        expand = lambda v: v[:, None, None, None]  # noqa: E731
        check_at, window = (tf.constant(v) for v in _apgd_checkpoints(steps))

        noise = noise / tf.reduce_max(tf.abs(noise), axis=[1, 2, 3], keepdims=True)
        x = tf.clip_by_value(images + eps * noise, 0.0, 1.0)
        loss, grad, logits = self.loss_and_gradient(logits_of, x, labels, loss_fn, targets)
        fooled = tf.argmax(logits, axis=1, output_type=tf.int32) != labels
        x_fooled, x_best, grad_best, loss_best = x, x, grad, loss
        step = tf.fill(batch_shape, 2.0 * eps)
        x_prev = x
        history = tf.tensor_scatter_nd_update(tf.zeros([steps + 1, batch_shape[0]]), [[0]], [loss])
        loss_best_last_check, reduced_last_check = loss_best, tf.ones(batch_shape, tf.bool)

        for i in tf.range(steps):
            momentum = tf.where(i > 0, 0.75, 1.0)
            z = project(x + expand(step) * tf.sign(grad), images, eps)
            x_next = project(x + momentum * (z - x) + (1.0 - momentum) * (x - x_prev), images, eps)
            x_prev, x = x, x_next
            loss, grad, logits = self.loss_and_gradient(logits_of, x, labels, loss_fn, targets)
            wrong = tf.argmax(logits, axis=1, output_type=tf.int32) != labels
            x_fooled = tf.where(expand(wrong & ~fooled), x, x_fooled)
            fooled = fooled | wrong
            history = tf.tensor_scatter_nd_update(history, [[i + 1]], [loss])
            improved = loss > loss_best
            x_best = tf.where(expand(improved), x, x_best)
            grad_best = tf.where(expand(improved), grad, grad_best)
            loss_best = tf.where(improved, loss, loss_best)

            # Step-size check: count loss increases over the last `window[i]` steps.
            rows = tf.range(steps)
            in_window = (rows <= i) & (rows > i - window[i])
            increases = tf.cast(history[1:] > history[:-1], tf.float32)
            count = tf.reduce_sum(increases * tf.cast(in_window, tf.float32)[:, None], axis=0)
            oscillating = count <= 0.75 * tf.cast(window[i], tf.float32)
            stalled = ~reduced_last_check & (loss_best_last_check >= loss_best)
            reduce = check_at[i] & (oscillating | stalled)
            step = tf.where(reduce, step / 2.0, step)
            x = tf.where(expand(reduce), x_best, x)
            grad = tf.where(expand(reduce), grad_best, grad)
            reduced_last_check = tf.where(check_at[i], reduce, reduced_last_check)
            loss_best_last_check = tf.where(check_at[i], loss_best, loss_best_last_check)

        return tf.where(expand(fooled), x_fooled, x_best), fooled


def build_attack(name, epsilon=DEFAULT_EPSILON, jit_compile=False):
    """Attack by name: fgsm, fgsm-rs, n-fgsm, pgd<N> (e.g. pgd7, pgd20), pgd<N>-cw, pgd<N>-ref, mifgsm, apgd-ce, apgd-t.

    PGD uses the paper's step 2/255 (scaled with ε as 0.25ε); `pgd<N>-ref` uses the reference
    code's step min(1.25ε, ε + 4/255)/N. MI-FGSM: 10 steps of ε/10, decay 1. APGD: 100
    steps; APGD-T: 9 target classes.
    """
    key = name.lower()
    common = dict(epsilon=epsilon, jit_compile=jit_compile)
    if key == "fgsm":
        return LinfPGD(steps=1, step_size=epsilon, random_start=False, **common)
    if key == "fgsm-rs":  # "fast" adversarial training (Wong et al. 2020): random start, step 1.25ε
        return LinfPGD(steps=1, step_size=1.25 * epsilon, random_start=True, **common)
    if key == "n-fgsm":  # de Jorge et al. 2022: start in [−2ε, 2ε], one step of ε, no projection onto the ball
        return LinfPGD(steps=1, step_size=epsilon, start_scale=2.0, ball=False, **common)
    if key == "mifgsm":
        return LinfPGD(steps=10, step_size=epsilon / 10, random_start=False, momentum=1.0, **common)
    if key == "apgd-ce":
        return APGD(loss="ce", **common)
    if key == "apgd-dlr":
        return APGD(loss="dlr", **common)
    if key == "apgd-t":
        return APGD(loss="dlr", targets=9, **common)
    if key.startswith("pgd"):
        body, _, variant = key[3:].partition("-")
        if body.isdigit() and int(body) > 0 and variant in ("", "cw", "ref"):
            steps = int(body)
            step = min(1.25 * epsilon, epsilon + 4 / 255) / steps if variant == "ref" else epsilon / 4
            return LinfPGD(steps=steps, step_size=step, loss="cw" if variant == "cw" else "ce", **common)
    raise ValueError(
        f"unknown attack {name!r}; use fgsm, fgsm-rs, n-fgsm, mifgsm, pgd<N> (e.g. pgd7, pgd20), pgd<N>-cw, pgd<N>-ref, "
        "apgd-ce, apgd-dlr or apgd-t."
    )
