"""timm's "ResNet strikes back" A1 recipe for ResNet-50 (Wightman, Touvron & Jegou 2021, Table 1:
80.4% top-1 at 224 px; timm's `resnet50.a1_in1k`), as faithfully as jaxcnn's pieces allow.

A1: 600 epochs, batch 2048, LAMB with lr 5e-3 and weight decay 0.01, cosine schedule after 5
warm-up epochs, binary cross-entropy, RandAugment `rand-m7-mstd0.5-inc1`, Mixup 0.2, CutMix 1.0
(switch probability 0.5), repeated augmentation x3, stochastic depth 0.05, random-resized crop +
flip, train and test at 224 (test crop ratio 0.95), no EMA, no label smoothing, no dropout.

    python -m jaxcnn.train --config=experiments/timm_a1.py \
        --data_dir=gs://BUCKET/tensorflow_datasets --workdir=gs://BUCKET/runs/r50_a1

Expected cost: as torchvision's recipe (experiments/torchvision_recipe.py), 600 epochs at 224 px:
769 M training images, about 35 hours on one NVIDIA H200 at the measured 6,100 images/s of the
bfloat16 ResNet-50 train step (benchmarks/RESULTS.md), if the input pipeline keeps up. Add
`--config.dtype=bfloat16` on GPU / TPU.

What differs from A1, and why:
- Loss: A1 trains with binary cross-entropy (targets thresholded at 0.2); jaxcnn has softmax
  cross-entropy only.
- RandAugment: Keras 3's 11 ops with strengths uniform in [0, 0.7] (timm's `mstd101`), not timm's
  15 with magnitude 7 +- 0.5 (`mstd0.5`) and increasing-severity variants (`inc1`); timm also
  applies each op with probability 0.5. `mstd0.5-inc1` is accepted and reported as not applied.
- Stochastic depth 0.05: jaxcnn's ResNets have no drop-path.
- Repeated augmentation x3: not implemented (each image once per epoch).
- Test crop ratio 0.95 (resize 236, crop 224): jaxcnn evaluates with 0.875 (resize 256, crop 224).
- LAMB: optax's `lamb` (trust ratio per parameter, decoupled weight decay); norms and biases are
  exempt from the decay, as timm's optimizer factory exempts 1-D parameters by default. timm's
  `Lamb` also clips the global gradient norm at 1.0 (`max_grad_norm`) and, with its default
  `always_adapt=False`, applies no trust ratio to the parameters without weight decay; optax's
  clips nothing and adapts every parameter.
"""

from jaxcnn.config import get_config as _default


def get_config():
    c = _default()
    c.arch = "resnet50"
    c.dataset = "imagenet2012"
    c.image_size = 224
    c.batch_size = 2048
    c.epochs = 600
    c.optimizer = "lamb"
    c.lr = 5e-3
    c.weight_decay = 0.01
    c.wd_exclude_bn_bias = True
    c.schedule = "cosine"
    c.warmup_epochs = 5
    c.label_smoothing = 0.0
    c.augment = True  # random-resized crop + flip
    c.randaugment = "rand-m7-mstd0.5-inc1"
    c.mixup_alpha = 0.2
    c.cutmix_alpha = 1.0
    c.mixup_prob = 1.0
    c.mixup_switch_prob = 0.5
    c.ema_decay = None  # A1 keeps no EMA
    c.eval_every_epochs = 1
    c.checkpoint_every_steps = 2000
    return c
