"""What the paper-claims reproduction trains and evaluates, per budget (`smoke`, `cpu`, `paper`).

A plan is an ordered list of training runs, each with its evaluation units. The order puts
the main claim first (Fig. 4: dedicated PGD-AT models, OAT with dual and with normal BN),
so that an interrupted suite has the most important numbers; the costly APGD checks come last.
"""

import dataclasses

from oat_tf.config import recipe_fields
from oat_tf.lambdas import S1, S3
from oat_tf.models.zoo import SLIMMABLE_WIDTHS

EXTRA_ATTACKS = ("mifgsm", "fgsm")  # Fig. 7's, next to the main attack
STRONGEST_ATTACK = "apgd-ce"


@dataclasses.dataclass(frozen=True)
class Budget:
    """Model, training and evaluation sizes of one reproduction budget."""

    name: str
    train: dict  # TrainConfig fields shared by every run
    main_attack: str = "pgd20"
    dedicated_lambdas: tuple = S1  # one PGD-AT model per λ (the frontier of Fig. 4)
    unseen_lambdas: tuple = S3  # OAT evaluated at λ it never saw (Fig. 5)
    unseen_dedicated: tuple = (0.15, 0.5, 0.9)  # PGD-AT models trained at some of them
    slimmable_lambdas: tuple = S1  # PGD-ATS models (Fig. 6)
    num_clean: int = 0  # test images for SA (0: the whole test split)
    num_robust: int = 2000  # the first of them for RA
    num_strongest: int = 1000  # APGD-CE (100 steps) images
    eval_batch: int = 250
    saliency_images: int = 4
    split: str = "test"  # what the evaluations measure on ("val" for choosing a recipe)
    description: str = ""

    @property
    def widths(self):
        """The slimmable runs' widths."""
        return tuple(self.train.get("widths", SLIMMABLE_WIDTHS))

    @property
    def fig7_main_attacks(self):
        """The attacks of the OAT and dedicated models' "main" evaluation: the main attack and the extra ones."""
        return (self.main_attack,) + EXTRA_ATTACKS

    @property
    def fig7_attacks(self):
        """(attack, evaluation name) pairs of Fig. 7: the main attack, the extra ones, APGD-CE."""
        return [(a, "main") for a in self.fig7_main_attacks] + [(STRONGEST_ATTACK, "strongest")]


BUDGETS = {
    "smoke": Budget(
        name="smoke",
        train=dict(model="resnet8", width_multiplier=0.25, epochs=1, batch_size=32, train_attack="fgsm-rs",
                   train_examples=256, validation_size=100, eval_every=1, eval_examples=32, eval_attack="fgsm",
                   widths=(0.5, 1.0)),
        dedicated_lambdas=(0.0, 1.0), unseen_dedicated=(0.5,), slimmable_lambdas=(1.0,),
        main_attack="pgd2", num_clean=200, num_robust=64, num_strongest=32, eval_batch=64, saliency_images=2,
        description="pipeline check only: a quarter-width ResNet-8 trained for one epoch on 256 images; "
                    "its numbers say nothing about the paper's claims",
    ),
    "cpu": Budget(
        name="cpu",
        train=dict(model="resnet20", width_multiplier=1.0, epochs=5, batch_size=128, train_attack="fgsm-rs",
                   train_examples=15000, eval_every=5, eval_examples=500, eval_attack="fgsm"),
        slimmable_lambdas=(0.0, 0.2, 1.0), num_strongest=500,
        description="ResNet-20 (16/32/64 channels), 15,000 training images, 5 epochs, batch 128, cosine lr 0.1, "
                    "training attack FGSM with random start (step 1.25ε, Wong et al. 2020) for every method; "
                    "PGD-ATS at 3 of the 6 λ and APGD-CE on 500 images, to fit about 5 hours on 2 CPU cores",
    ),
    "paper": Budget(
        name="paper",
        train=dict(model="resnet34", width_multiplier=1.0, epochs=200, batch_size=128, train_attack="pgd7",
                   train_examples=0, eval_every=10, eval_examples=1000, eval_attack="pgd7"),
        num_robust=10000, num_strongest=10000, eval_batch=250, saliency_images=8,
        description="the paper's setting: ResNet-34, the whole 45k training split, 200 epochs, PGD-7 training "
                    "attack; RA on the whole test split (GPUs)",
    ),
}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One cached evaluation of a run: SA/RA at `lambdas` × `widths` (None: all) under `attacks`."""

    name: str
    lambdas: tuple
    attacks: tuple
    num_robust: int


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: TrainConfig fields beyond the budget's, and what to evaluate once trained."""

    name: str
    role: str  # "dedicated", "oat", "oat-bn", "unseen-dedicated", "oats", "slimmable-dedicated"
    fields: dict
    evaluations: tuple


def _dedicated(lam, role, attacks, budget, method="pgdat", **fields):
    return Run(f"{method}-lam{lam:g}", role, dict(method=method, lam=lam, **fields),
               (Evaluation("main", (lam,), attacks, budget.num_robust),))


def build_plan(budget, recipe="port"):
    """The ordered runs of `budget` (a Budget), the OAT and OATS runs trained with `recipe` (a RECIPES
    name; the dedicated runs have no λ conditioning, the PGD-ATS ones take the recipe's width loss, as
    OATS): Fig. 4's first, the ends of the frontier leading."""
    conditioning = recipe_fields(recipe, budget.train["epochs"])
    ends = [lam for lam in budget.dedicated_lambdas if lam in (0.0, 1.0)]
    inner = [lam for lam in budget.dedicated_lambdas if lam not in (0.0, 1.0)]
    oat = [
        Run("oat", "oat", dict(method="oat", **conditioning),
            (Evaluation("main", S1, budget.fig7_main_attacks, budget.num_robust),
             Evaluation("unseen", budget.unseen_lambdas, (budget.main_attack,), budget.num_robust))),
        Run("oat-bn", "oat-bn", dict(method="oat", normal_bn=True, **conditioning),
            (Evaluation("main", S1, (budget.main_attack,), budget.num_robust),)),
    ]
    fig4 = ([_dedicated(lam, "dedicated", budget.fig7_main_attacks, budget) for lam in ends] + oat
            + [_dedicated(lam, "dedicated", budget.fig7_main_attacks, budget) for lam in inner])
    fig5 = [_dedicated(lam, "unseen-dedicated", (budget.main_attack,), budget) for lam in budget.unseen_dedicated]
    fig6 = [Run("oats", "oats", dict(method="oats", **conditioning), (Evaluation("main", S1, (budget.main_attack,), budget.num_robust),))]
    fig6 += [_dedicated(lam, "slimmable-dedicated", (budget.main_attack,), budget, method="pgdats",
                        width_loss=conditioning["width_loss"]) for lam in budget.slimmable_lambdas]
    return fig4 + fig5 + fig6


def strongest_evaluations(plan, budget):
    """(run, Evaluation) pairs of the APGD-CE check on the OAT and dedicated PGD-AT models (Fig. 7)."""
    pairs = []
    for run in plan:
        if run.role == "oat":
            pairs.append((run, Evaluation("strongest", S1, (STRONGEST_ATTACK,), budget.num_strongest)))
        elif run.role == "dedicated":
            lam = run.fields["lam"]
            pairs.append((run, Evaluation("strongest", (lam,), (STRONGEST_ATTACK,), budget.num_strongest)))
    return pairs
