"""The default training configuration: a short ResNet run on Fashion-MNIST.

`python -m jaxcnn.train` with no arguments uses it; recipe files in `experiments/` start from it
(`from jaxcnn.config import get_config`) and change what their paper or experiment needs.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Returns the default configuration (every key `python -m jaxcnn.train` reads)."""
    c = ml_collections.ConfigDict()
    # Model. `arch_options` are variant overrides, e.g. {"stride_in_1x1": True} for ResNet v1.
    c.arch = "resnet8"
    c.arch_options = ml_collections.ConfigDict()
    c.dtype = "float32"  # computation dtype; "bfloat16" for mixed precision on GPU / TPU
    # Transfer learning (jaxcnn/transfer.py): initial weights (a run dir, a .safetensors / .pth
    # file, torchvision:NAME or timm:NAME), what to freeze (none | backbone | a comma list of
    # top-level modules such as stem,stage1), and the backbone's learning rate relative to the head.
    c.init_from = ml_collections.config_dict.placeholder(str)
    c.freeze = "none"
    c.backbone_lr_mult = 1.0
    # Data.
    c.dataset = "fashion_mnist"
    c.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS data dir; None: TFDS default
    c.image_size = ml_collections.config_dict.placeholder(int)  # None: the dataset's own size
    # A folder dataset (`--dataset=folder:PATH`) without a val/ folder holds out this share of
    # each class; unreadable images stop the run unless skipped (and listed).
    c.val_fraction = 0.2
    c.skip_bad_images = False
    # Off for the default 2-epoch run (it learns faster without; measured 0.877 with vs 0.901 without
    # on Fashion-MNIST); recipes for long runs (experiments/) turn it on.
    c.augment = False
    # Policies on top of crop + flip (jaxcnn/data/augment.py; README "Training recipes"), off by
    # default, applied whether or not `augment` is: RandAugment in timm's notation
    # ("rand-m9-n2-mstd0.5") or "trivial" (TrivialAugment's sampling on Keras's ops), or AugMix
    # ("augmix-m3-w3-d3"), not both; and random erasing with this probability per image.
    c.randaugment = ml_collections.config_dict.placeholder(str)
    c.augmix = ml_collections.config_dict.placeholder(str)
    c.random_erasing = 0.0
    # Mixup / CutMix on device in the train step, timm's batch mode (jaxcnn/training/mixing.py):
    # Beta(alpha, alpha) mixing weights, 0 turns each off; with both on, CutMix is chosen with
    # probability mixup_switch_prob; mixup_prob is the chance a batch is mixed at all.
    c.mixup_alpha = 0.0
    c.cutmix_alpha = 0.0
    c.mixup_prob = 1.0
    c.mixup_switch_prob = 0.5
    # Length: `steps` (if set) wins over `epochs`.
    c.epochs = 2
    c.steps = ml_collections.config_dict.placeholder(int)
    c.batch_size = 128  # global, over all devices and processes
    c.eval_batch_size = ml_collections.config_dict.placeholder(int)  # None: batch_size
    # Optimisation.
    c.optimizer = "sgd"  # sgd | adamw | rmsprop | lamb
    c.lr = 0.1
    c.momentum = 0.9
    c.nesterov = True
    c.weight_decay = 5e-4
    c.wd_exclude_bn_bias = True
    c.label_smoothing = 0.0
    c.schedule = "cosine"  # constant | step | multistep | cosine | exponential | plateau
    c.warmup_epochs = 0.2
    c.decay_epochs = 30.0  # step: decay every decay_epochs
    c.milestones = ()  # multistep: epochs at which to decay
    c.gamma = 0.1  # step / multistep / exponential decay factor
    c.plateau_factor = 0.1  # plateau: multiply the lr by this ...
    c.plateau_patience = 5  # ... after this many evaluations without improvement
    c.plateau_threshold = 1e-3
    # An exponential moving average of the parameters and BatchNorm statistics (None: off; timm's
    # --model-ema-decay 0.9998), with timm ModelEmaV3's warm-up of the decay when ema_warmup.
    c.ema_decay = ml_collections.config_dict.placeholder(float)
    c.ema_warmup = True
    # Micro-batches per step: the batch is split in this many parts whose gradients are summed
    # before one update (the same global batch in 1/k of the activation memory).
    c.grad_accum_steps = 1
    # Consecutive steps with a non-finite loss or gradient that are skipped before the run stops;
    # None: 0 for float32 / bfloat16 (the first one stops it), 20 for float16, whose dynamic loss
    # scale halves at every overflow.
    c.max_skipped_steps = ml_collections.config_dict.placeholder(int)
    # Bookkeeping.
    c.seed = 0
    c.log_every_steps = 50
    c.eval_every_epochs = 1
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 3
    # "10,20": a jax.profiler trace of steps 10 to 20 into the run's profile/ folder.
    c.profile_steps = ml_collections.config_dict.placeholder(str)
    return c
