"""The ResNet paper's ImageNet recipe (He et al. 2015, Sec. 3.4).

"SGD with a mini-batch size of 256. The learning rate starts from 0.1 and is divided by 10 when the
error plateaus ... weight decay of 0.0001 and a momentum of 0.9. We do not use dropout." BatchNorm
after every convolution, He initialisation, scale + flip augmentation, 224x224 crops.

    python -m jaxcnn.train --config=experiments/resnet_paper.py --dataset=imagenet2012 \
        --data_dir=gs://BUCKET/tensorflow_datasets --workdir=runs/resnet50_paper

The paper trains for up to 60e4 iterations (~120 epochs); the lr divisions then happen on the
plateau of the validation accuracy, checked each epoch. The paper puts the stride of the bottleneck
on its first 1x1 (`arch_options.stride_in_1x1=True`); torchvision's v1.5 is the default here.
"""

from jaxcnn.config import get_config as _default


def get_config():
    c = _default()
    c.arch = "resnet50"
    c.arch_options.stride_in_1x1 = True  # the paper's placement (v1)
    c.dataset = "imagenet2012"
    c.image_size = 224
    c.augment = True  # random-resized crop (scale augmentation) + horizontal flip
    c.batch_size = 256
    c.epochs = 120
    c.optimizer = "sgd"
    c.nesterov = False
    c.momentum = 0.9
    c.lr = 0.1
    c.weight_decay = 1e-4
    c.wd_exclude_bn_bias = False  # the paper decays every weight
    c.schedule = "plateau"
    c.warmup_epochs = 0.0
    c.plateau_factor = 0.1
    c.plateau_patience = 5
    c.eval_every_epochs = 1
    c.checkpoint_every_steps = 2000
    return c
