"""Training configuration: methods, presets (`paper`, `cpu`) and validation before any work starts."""

import dataclasses
import math
import os

from oat_tf.attacks import build_attack
from oat_tf.data import DATASETS
from oat_tf.lambdas import S1, S2, validate_grid
from oat_tf.layers.film import FILM_FORMS
from oat_tf.models.network import NORM_ROUTINGS
from oat_tf.models.zoo import ARCHITECTURES, SLIMMABLE_WIDTHS

# method → (zoo variant, conditioned on λ, slimmable)
METHODS = {
    "oat": ("oat", True, False),
    "oats": ("oats", True, True),
    "pgdat": ("plain", False, False),
    "pgdats": ("slimmable", False, True),
}
LAMBDA_SETS = {"S1": S1, "S2": S2}
WIDTH_LOSSES = ("mean", "sum")
# TrainConfig fields that are OATNetwork options of the same name (how the network is conditioned on λ).
NETWORK_CONDITIONING = ("film_form", "shortcut_film", "private_share", "adapter_share", "norm_routing")
PAPER_MODELS = {"cifar10": "resnet34", "svhn": "wrn16_8", "stl10": "wrn40_2"}


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; saved in the run directory and checked on resume."""

    method: str = "oats"
    dataset: str = "cifar10"
    data_dir: str = ""
    run_dir: str = ""
    model: str = "resnet34"
    width_multiplier: float = 1.0
    normal_bn: bool = False  # OAT/OATS with one BN instead of the dual BN (the ablation)
    encoding: str = "orthogonal"
    film_form: str = "reference"  # FiLM as in the paper's code, or "identity" (centred at γ = 1, β = 0)
    shortcut_film: bool = True  # FiLM also after the projection shortcuts' norms (the paper's ResNet: no)
    norm_routing: str = "switch"  # dual BN: every λ > 0 takes BN_a (the paper's), or "blend": (1 − λ)·BN_c + λ·BN_a
    private_share: float = 0.0  # share of channels private to the clean end (gate 1 − λ), as many to the robust end (λ)
    adapter_share: float = 0.0  # λ adapters on the blocks' 3×3 convs, rank ≈ share·channels per end (0: none)
    clean_share: float = None  # OAT(S): share of λ = 0 samples per batch (None: ⌈B/|S|⌉, the reference code's)
    film_lr_scale: float = 1.0  # learning rate of FiLM's MLPs relative to the other weights
    joint_forward: bool = False  # one training pass over clean and adversarial images (one BN_a batch statistic)
    lam: float = 1.0  # PGD-AT(S): the fixed λ
    lam_set: tuple = S1  # OAT(S): the λ set sampled per sample
    continuous_lam: bool = False
    widths: tuple = SLIMMABLE_WIDTHS
    width_loss: str = "mean"  # OATS/PGD-ATS: mean of the widths' losses, or "sum" (slimmable networks' accumulation)
    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4  # L2 added to the gradient, as PyTorch's SGD (coupled, not decoupled)
    train_attack: str = "pgd7"
    epsilon_255: float = 8.0
    train_examples: int = 0  # 0: the whole training split (minus validation)
    validation_size: int = 5000
    eval_every: int = 10  # epochs, and after the last
    eval_examples: int = 1000
    eval_attack: str = "pgd7"
    eval_lambdas: tuple = S1
    watch_examples: int = 0  # validation images whose RA at the most robust λ is checked after every epoch (0: off)
    xla: bool = False  # XLA made PGD slower on a 2-core CPU with TF 2.21 (see the README)
    seed: int = 0
    init_from: str = ""  # fine-tuning: start from this run directory's last checkpoint (same network)
    fake_quantize: bool = False  # quantization-aware training: int8-rounded convolution inputs and kernels

    @property
    def variant(self):
        variant = METHODS[self.method][0]
        if self.normal_bn and self.method in ("oat", "oats"):
            return "oat_bn"
        return variant

    @property
    def model_widths(self):
        return tuple(self.widths) if METHODS[self.method][2] else (1.0,)

    @property
    def conditioned(self):
        return METHODS[self.method][1]

    def validate(self):
        """Raises ValueError naming the bad field; returns self."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {sorted(METHODS)}.")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {sorted(DATASETS)}.")
        if self.model not in ARCHITECTURES:
            raise ValueError(f"unknown model {self.model!r}; choose one of {sorted(ARCHITECTURES)}.")
        if math.isnan(self.lam) or not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {self.lam}.")
        self.lam_set = validate_grid(self.lam_set, "lam_set")
        if self.film_form not in FILM_FORMS:
            raise ValueError(f"unknown film_form {self.film_form!r}; choose one of {list(FILM_FORMS)}.")
        if self.norm_routing not in NORM_ROUTINGS:
            raise ValueError(f"unknown norm_routing {self.norm_routing!r}; choose one of {list(NORM_ROUTINGS)}.")
        if not 0.0 <= self.private_share <= 0.5 or (self.private_share and not self.conditioned):
            raise ValueError(f"private_share must lie in [0, 0.5] and needs a λ-conditioned method (oat, oats), "
                             f"got {self.private_share} with {self.method!r}.")
        if not 0.0 <= self.adapter_share <= 1.0 or (self.adapter_share and not self.conditioned):
            raise ValueError(f"adapter_share must lie in [0, 1] and needs a λ-conditioned method (oat, oats), "
                             f"got {self.adapter_share} with {self.method!r}.")
        if self.clean_share is not None:
            if math.isnan(self.clean_share) or not 0.0 < self.clean_share < 1.0:
                raise ValueError(f"clean_share must lie in (0, 1), got {self.clean_share}.")
            if 0.0 not in self.lam_set or len(self.lam_set) == 1:
                raise ValueError(f"clean_share needs a lam_set with 0 and another λ, got {list(self.lam_set)}.")
        self.eval_lambdas = validate_grid(self.eval_lambdas, "eval_lambdas")
        if self.normal_bn and self.method == "oats":
            raise ValueError("normal_bn is the OAT ablation; OATS always uses switchable dual BN.")
        from oat_tf.layers.slimming import validate_widths

        self.widths = validate_widths(self.widths)
        for name, value, low in (("epochs", self.epochs, 1), ("batch_size", self.batch_size, 2),
                                 ("eval_every", self.eval_every, 1), ("eval_examples", self.eval_examples, 1),
                                 ("train_examples", self.train_examples, 0), ("validation_size", self.validation_size, 1),
                                 ("watch_examples", self.watch_examples, 0)):
            if int(value) < low:
                raise ValueError(f"{name} must be at least {low}, got {value}.")
        if not self.learning_rate > 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("learning_rate must be > 0, weight_decay ≥ 0 and momentum in [0, 1).")
        if self.width_loss not in WIDTH_LOSSES:
            raise ValueError(f"unknown width_loss {self.width_loss!r}; choose one of {list(WIDTH_LOSSES)}.")
        if not METHODS[self.method][2]:
            self.width_loss = "mean"  # one width: the same loss either way, recorded as runs before the option
        if not self.film_lr_scale > 0:
            raise ValueError(f"film_lr_scale must be > 0, got {self.film_lr_scale}.")
        build_attack(self.train_attack), build_attack(self.eval_attack)
        if not self.run_dir:
            raise ValueError("run_dir must be set.")
        if self.init_from and os.path.abspath(self.init_from) == os.path.abspath(self.run_dir):
            raise ValueError(f"init_from names the run directory itself ({self.run_dir!r}); a rerun there resumes.")
        return self

    def to_dict(self):
        """The config as JSON-able values (tuples as lists)."""
        return json_values(dataclasses.asdict(self))

    @classmethod
    def stored_dict(cls, stored):
        """A config.json's dict completed with the defaults of fields added since it was written."""
        return {**json_values({f.name: f.default for f in dataclasses.fields(cls)}), **stored}

    @classmethod
    def from_dict(cls, stored):
        """The config a stored dict describes (lists back to tuples; fields this version lacks dropped)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known})


def json_values(fields):
    """`fields` with tuple values as lists, as JSON stores them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


# How OAT is conditioned on λ and trained. `paper`: the paper's network (reference FiLM after every
# norm but the projection shortcuts') and sampling (⌈B/|S|⌉ clean samples). `port`: this port's first
# recipe, the paper's but with FiLM after the shortcut norms too (results/reproduce-cpu-port/ was made
# with it). `cpu`: the recipe chosen at the cpu budget on the validation split (experiments/ablate.py,
# results/ablation/README.md). `epoch_scale` multiplies a setting's epochs: a recipe with a cheaper
# training step spends the same compute on more epochs. `width_loss` (OATS and its PGD-ATS baselines):
# "sum" as slimmable networks train (Yu et al. 2019, Alg. 1: every width's gradient accumulated);
# the port's first recipe took the mean, a third of each width's gradient with three widths.
_PAPER_RECIPE = dict(film_form="reference", shortcut_film=False, private_share=0.0, adapter_share=0.0, clean_share=None,
                     film_lr_scale=1.0, joint_forward=False, norm_routing="switch", lam_set=S1, width_loss="sum",
                     epoch_scale=1.0)
RECIPES = {
    "paper": _PAPER_RECIPE,
    "port": dict(_PAPER_RECIPE, shortcut_film=True, width_loss="mean"),
    # identity-film-lam-ends-blend-epochs-12 of the ablation: the ends of S trained, a norm blend between
    # them, and the compute a step saves (about 60 against 146 CPU-s per epoch with FGSM-RS) spent on
    # 2.4× the epochs.
    "cpu": dict(_PAPER_RECIPE, film_form="identity", shortcut_film=True, lam_set=(0.0, 1.0), norm_routing="blend",
                epoch_scale=2.4),
}
# The `cpu` preset's (the quickstart's) recipe: `cpu` with 60 % of every batch at λ = 0 instead of half.
# Pre-registered for issue 13's quickstart goal (SA and RA each separated by ≥ 8 pp at every width, on
# the run's validation images) after the `cpu` recipe met it at seed 0 but not at seed 1 (SA 6.6–7.7
# pp); it met it at both seeds (results/quickstart/README.md). The reproduction keeps `cpu`.
RECIPES["quickstart"] = dict(RECIPES["cpu"], clean_share=0.6)
PRESET_RECIPES = {"paper": "paper", "cpu": "quickstart"}


def flag_numbers(name, values):
    """The floats of a comma-list flag (`--name=a,b,…`), or a ValueError naming the flag."""
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise ValueError(f"--{name} must be a comma list of numbers, got {','.join(values)!r}.") from None


def recipe_fields(name, epochs):
    """The TrainConfig fields of recipe `name` in a setting of `epochs` epochs."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}.")
    fields = dict(RECIPES[name])
    fields["epochs"] = max(1, round(epochs * fields.pop("epoch_scale")))
    return fields


def preset(name, dataset="cifar10", recipe=None):
    """`paper`: the paper's setting. `cpu`: a half-width ResNet-20 on a 10k-image subset for a few
    epochs with a cheap training attack (FGSM with random start, Wong et al. 2020), so that it
    finishes in minutes on 2 cores. Each comes with its own conditioning recipe (PRESET_RECIPES), or
    `recipe` when given."""
    if name == "paper":
        values = dict(model=PAPER_MODELS.get(dataset, "resnet34"), epochs=200, batch_size=128, train_attack="pgd7",
                      train_examples=0, eval_every=10, eval_examples=1000)
    elif name == "cpu":
        # 6 epochs × the cpu recipe's scale 2.4 = 14: the quickstart's ~12 minutes on 2 cores.
        values = dict(model="resnet20", width_multiplier=0.5, epochs=6, batch_size=128, train_attack="fgsm-rs",
                      train_examples=10000, eval_every=100, eval_examples=1000, eval_attack="pgd7")
    else:
        raise ValueError(f"unknown preset {name!r}; choose paper or cpu.")
    return dict(values, **recipe_fields(recipe or PRESET_RECIPES[name], values["epochs"]))
