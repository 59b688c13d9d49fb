"""torchvision's ResNet-50 "new recipe" (IMAGENET1K_V2 weights: 80.858% top-1, from 76.130% with
the same network), as faithfully as jaxcnn's pieces allow.

torchvision trained it with (references/classification, 8 GPUs x 128 images):

    torchrun --nproc_per_node=8 train.py --model resnet50 --batch-size 128 --lr 0.5 \
        --lr-scheduler cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear \
        --auto-augment ta_wide --epochs 600 --random-erase 0.1 --weight-decay 0.00002 \
        --norm-weight-decay 0.0 --label-smoothing 0.1 --mixup-alpha 0.2 --cutmix-alpha 1.0 \
        --train-crop-size 176 --model-ema --val-resize-size 232 --ra-sampler --ra-reps 4

Here:

    python -m jaxcnn.train --config=experiments/torchvision_recipe.py \
        --data_dir=gs://BUCKET/tensorflow_datasets --workdir=gs://BUCKET/runs/r50_tv_recipe

Expected cost: 600 epochs of ImageNet's 1,281,167 images are 769 M training images; the bfloat16
ResNet-50 train step of jaxcnn runs at about 6,100 images/s on one NVIDIA H200
(benchmarks/RESULTS.md, random data), i.e. about 35 hours on one such GPU (4.4 on eight), if the
input pipeline keeps up (TrivialAugment + JPEG decoding on the host CPUs is the usual limit), plus
600 evaluations of 50,000 images. Add `--config.dtype=bfloat16` on GPU / TPU.

What differs from torchvision's recipe, and why:
- TrivialAugmentWide -> `randaugment=trivial`: TrivialAugment's sampling (one op per image at a
  uniformly random strength) on Keras 3's 11 ops, not torchvision's 14 "wide" ones (no Identity;
  its own ranges); jaxcnn/data/augment.py lists both.
- Train crop 176 / eval resize 232 + crop 224 (FixRes) -> one `image_size` 224 for both: training
  uses random-resized crops of 224 (more compute per image than 176, about 1.6x), eval resizes to
  256 and crops 224 (the classic transform).
- Repeated augmentation (`--ra-sampler --ra-reps 4`) is not implemented: each image once per epoch.
- The EMA: torchvision averages every 32 steps with decay 1 - 54.6 x 2e-5 (its "adjust" for
  1024 x 32 / 600) and copies the weights during the 5 warm-up epochs; here the EMA updates every
  step with the equivalent per-step decay 0.99997 and timm's decay warm-up.
- Warm-up: torchvision's starts at lr x 0.01, jaxcnn's at 0 (both linear over 5 epochs).
- Weight decay: torchvision exempts the norm layers only (`--norm-weight-decay 0`); jaxcnn exempts
  norm layers and biases (`wd_exclude_bn_bias`): for ResNet-50 that is the classifier's bias alone.
- Mixup / CutMix: torchvision pairs each image with the batch rolled by one, per GPU; jaxcnn with
  the global batch flipped (timm's batch mode). Both pick Mixup or CutMix 50/50 per batch.
- torchvision's loss on soft targets and its label smoothing are the same as here.
"""

from jaxcnn.config import get_config as _default


def get_config():
    c = _default()
    c.arch = "resnet50"
    c.dataset = "imagenet2012"
    c.image_size = 224
    c.batch_size = 1024  # 8 x 128
    c.epochs = 600
    c.optimizer = "sgd"
    c.momentum = 0.9
    c.nesterov = False
    c.lr = 0.5
    c.schedule = "cosine"
    c.warmup_epochs = 5
    c.weight_decay = 2e-5
    c.wd_exclude_bn_bias = True
    c.label_smoothing = 0.1
    c.augment = True  # random-resized crop + flip
    c.randaugment = "trivial"
    c.random_erasing = 0.1
    c.mixup_alpha = 0.2
    c.cutmix_alpha = 1.0
    c.mixup_prob = 1.0
    c.mixup_switch_prob = 0.5
    c.ema_decay = 0.99997
    c.eval_every_epochs = 1
    c.checkpoint_every_steps = 2000
    return c
