"""Train OAT, OATS, PGD-AT or PGD-ATS.

    python train/oats.py --dataset=cifar10 --preset=cpu --data_dir=../shared/data/cifar10-jpeg.tar.gz

Flags pick a preset (`paper` or `cpu`), and any flag given overrides the preset's value.
A rerun of the same command resumes from the run directory's last checkpoint.
"""

import os
import sys

from oat_tf.allocator import restart_with_tcmalloc

restart_with_tcmalloc()  # before TensorFlow loads: its allocations are what TCMalloc speeds up

from absl import app, flags  # noqa: E402

from oat_tf.config import LAMBDA_SETS, METHODS, RECIPES, TrainConfig, flag_numbers, preset  # noqa: E402
from oat_tf.data import DATASETS  # noqa: E402
from oat_tf.tradeoff_table import tradeoff_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("method", "oats", sorted(METHODS), "oat, oats, pgdat (fixed λ) or pgdats (fixed λ, slimmable).")
flags.DEFINE_enum("dataset", "cifar10", sorted(DATASETS), "Dataset.")
flags.DEFINE_string("data_dir", None, "Image-folder tree or .tar.gz of one; default: tensorflow-datasets.")
flags.DEFINE_enum("preset", "paper", ["paper", "cpu"], "Preset of model, epochs, attack and subset.")
flags.DEFINE_enum("recipe", None, sorted(RECIPES), "Conditioning recipe (default: the preset's own); the "
                  "conditioning flags below override single fields.")
flags.DEFINE_string("run_dir", None, "Run directory (default runs/<method>-<dataset>-<preset>).")
flags.DEFINE_string("lam_set", None, "OAT(S) λ set: S1, S2 or a comma list (default S1).")
flags.DEFINE_bool("continuous_lam", None, "OAT(S): draw λ uniformly in (0, 1] instead of from the set.")
flags.DEFINE_bool("normal_bn", None, "OAT with one BN instead of dual BN (the ablation).")
flags.DEFINE_list("widths", None, "OATS/PGD-ATS width factors (default 0.5,0.75,1).")
flags.DEFINE_enum("width_loss", None, ["mean", "sum"], "OATS/PGD-ATS: the mean of the widths' losses (default) or "
                  "their sum, as slimmable networks accumulate every width's gradient.")
for name, kind, help_text in [
    ("model", "string", "Zoo network."), ("width_multiplier", "float", "Channel multiplier."),
    ("encoding", "string", "λ encoding: orthogonal, onehot, dct, scalar."),
    ("film_form", "string", "FiLM form: reference (the paper's) or identity (centred at γ = 1, β = 0)."),
    ("shortcut_film", "bool", "FiLM also after the projection shortcuts' norms (the paper's ResNet: no)."),
    ("norm_routing", "string", "Dual BN routing: switch (the paper's: every λ > 0 takes BN_a) or blend "
                               "((1 − λ)·BN_c + λ·BN_a)."),
    ("private_share", "float", "Share of channels private to the clean end (gated by 1 − λ), and as many to the "
                               "robust end (gated by λ); default 0."),
    ("adapter_share", "float", "λ adapters on the blocks' 3×3 convolutions, rank ≈ share·channels per end of "
                               "the λ range (default 0: none)."),
    ("clean_share", "float", "OAT(S): share of λ = 0 samples per batch (default ⌈B/|S|⌉, the reference's)."),
    ("film_lr_scale", "float", "Learning rate of FiLM's MLPs relative to the other weights (default 1)."),
    ("joint_forward", "bool", "One training pass over clean and adversarial images, so that BN_a normalizes both "
                              "with one batch statistic, as its moving statistics do at inference."),
    ("lam", "float", "PGD-AT(S) fixed λ."),
    ("epochs", "integer", "Epochs."), ("batch_size", "integer", "Global batch size."),
    ("learning_rate", "float", "Initial learning rate (cosine decay)."), ("momentum", "float", "SGD momentum."),
    ("weight_decay", "float", "L2 weight decay."), ("train_attack", "string", "Training attack (e.g. pgd7, fgsm-rs)."),
    ("epsilon_255", "float", "L∞ budget in 1/255 units."), ("train_examples", "integer", "Training subset (0: all)."),
    ("validation_size", "integer", "Images held out of the training split."),
    ("eval_every", "integer", "Validate every k epochs and after the last."),
    ("eval_examples", "integer", "Validation images for SA/RA."), ("eval_attack", "string", "Validation attack."),
    ("watch_examples", "integer", "Validation images checked after every epoch: SA and RA (validation attack) at "
                                  "the most robust λ and full width, to catch catastrophic overfitting (0: off)."),
    ("xla", "bool", "XLA-compile the attack."), ("seed", "integer", "Seed."),
    ("init_from", "string", "Fine-tune: start from this run directory's last checkpoint (the same network)."),
    ("fake_quantize", "bool", "Quantization-aware training: every convolution's input and kernel rounded to int8 "
                              "in training, as the full-int8 file rounds them."),
]:
    getattr(flags, f"DEFINE_{kind}")(name, None, help_text)


def config_from_flags():
    values = dict(preset(FLAGS.preset, FLAGS.dataset, FLAGS.recipe), method=FLAGS.method, dataset=FLAGS.dataset,
                  data_dir=FLAGS.data_dir or "")
    for name in ("model", "width_multiplier", "encoding", "film_form", "shortcut_film", "norm_routing", "private_share",
                 "adapter_share", "clean_share", "film_lr_scale", "joint_forward", "lam", "epochs", "batch_size",
                 "learning_rate", "momentum", "weight_decay", "train_attack", "epsilon_255", "train_examples",
                 "validation_size", "eval_every", "eval_examples", "eval_attack", "watch_examples", "xla", "seed", "continuous_lam",
                 "normal_bn", "width_loss", "init_from", "fake_quantize"):
        if getattr(FLAGS, name) is not None:
            values[name] = getattr(FLAGS, name)
    if FLAGS.lam_set is not None:
        text = FLAGS.lam_set.strip()
        values["lam_set"] = LAMBDA_SETS.get(text.upper()) or flag_numbers("lam_set", text.split(","))
        values["eval_lambdas"] = values["lam_set"]
    if FLAGS.widths is not None:
        values["widths"] = flag_numbers("widths", FLAGS.widths)
    values["run_dir"] = FLAGS.run_dir or os.path.join("runs", f"{FLAGS.method}-{FLAGS.dataset}-{FLAGS.preset}")
    return TrainConfig(**values).validate()


def main(argv):
    del argv
    from oat_tf.trainer import Trainer

    try:
        trainer = Trainer(config_from_flags())
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    summary = trainer.train()
    run_dir = trainer.run_dir
    print(f"\nfinal validation ({summary['validation'][0]['n_clean']} images):\n"
          f"{tradeoff_table(summary['validation'])}\n"
          f"SA–RA plot: {run_dir}/sa_ra_val.png; model: {run_dir}/model.keras\n"
          f"go on with:\n  tensorboard --logdir {run_dir}/tensorboard\n"
          f"  python export/export.py --checkpoint {run_dir} --out bundles/{os.path.basename(run_dir)}"
          + (f" --data_dir {FLAGS.data_dir}" if FLAGS.data_dir else ""))


if __name__ == "__main__":
    app.run(main)
