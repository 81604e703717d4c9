#!/usr/bin/env bash
# Trains the pretrained OATS ResNet-20 and its two dedicated baselines (standard training and
# N-FGSM adversarial training at λ = 1) on all 45,000 CIFAR-10 training images, one after the
# other. Every run resumes from its last epoch, so after an interruption the same command
# goes on where it stopped:
#
#     setsid nohup bash experiments/pretrained.sh >> runs/pretrained.log 2>&1 &
#
# The recipe and how the model is chosen: results/pretrained/PLAN.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
COMMON=(--dataset=cifar10 --preset=paper --model=resnet20 --width_multiplier=1 --epochs=24 --train_examples=0
        --eval_every=6 --eval_examples=1000 --eval_attack=pgd7 --watch_examples=500 --data_dir="$DATA")

python train/oats.py --method=oats --recipe=cpu --lam_set=0,0.2,0.4,0.6,0.8,1 --clean_share=0.3 \
    --train_attack=n-fgsm "${COMMON[@]}" --run_dir=runs/pretrained-oats-resnet20
python train/oats.py --method=pgdat --lam=0 "${COMMON[@]}" --run_dir=runs/pretrained-standard-resnet20
python train/oats.py --method=pgdat --lam=1 --train_attack=n-fgsm "${COMMON[@]}" --run_dir=runs/pretrained-pgdat-resnet20
