"""VGG-11/13/16/19 with and without BatchNorm (Simonyan & Zisserman 2015, Table 1 configs A, B, D, E).

torchvision's layout, for weight compatibility: every 3x3 convolution keeps its bias (also in the BN
variants, which the paper predates), an adaptive average pool to 7x7 precedes the classifier (an
identity at 224x224; it lets smaller inputs through), and the classifier is
fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> head.

Parameter tree: `stage{s}_conv{c}/{conv[,bn]}`, `fc6`, `fc7`, `head`.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import conv_kernel_init, torch_dense
from jaxcnn.layers.pooling import adaptive_avg_pool, flatten_nchw
from jaxcnn.models.base import Classifier, check_image_batch


@dataclasses.dataclass(frozen=True)
class VGGVariant:
    """One VGG configuration.

    Attributes:
        stages: output channels of each 3x3 convolution, grouped by the max-pool that ends the stage.
        batch_norm: BatchNorm after every convolution (torchvision's `_bn` models).
        fc: widths of the two hidden fully connected layers.
        dropout: dropout rate before fc7 and the head (train mode only).
        num_classes: classes of the native head.
    """

    stages: tuple[tuple[int, ...], ...]
    batch_norm: bool = False
    fc: tuple[int, int] = (4096, 4096)
    dropout: float = 0.5
    num_classes: int = 1000


# Simonyan & Zisserman 2015, Table 1: configurations A (11 layers), B (13), D (16), E (19).
_CONFIGS = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}

VARIANTS: dict[str, VGGVariant] = {
    **{f"vgg{d}": VGGVariant(stages) for d, stages in _CONFIGS.items()},
    **{f"vgg{d}_bn": VGGVariant(stages, batch_norm=True) for d, stages in _CONFIGS.items()},
}

_PAPER = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks (arXiv 1409.1556), Table 1"
_BN_NOTE = "BatchNorm after each conv (torchvision; the paper predates BN); conv biases kept"
REFERENCE: dict[str, tuple[str, int, int, str]] = {
    "vgg11": (_PAPER + " (A)", 132_863_336, 7_609_090_048, ""),
    "vgg13": (_PAPER + " (B)", 133_047_848, 11_308_466_176, ""),
    "vgg16": (_PAPER + " (D)", 138_357_544, 15_470_264_320, ""),
    "vgg19": (_PAPER + " (E)", 143_667_240, 19_632_062_464, ""),
    "vgg11_bn": (_PAPER + " (A)", 132_868_840, 7_609_090_048, _BN_NOTE),
    "vgg13_bn": (_PAPER + " (B)", 133_053_736, 11_308_466_176, _BN_NOTE),
    "vgg16_bn": (_PAPER + " (D)", 138_365_992, 15_470_264_320, _BN_NOTE),
    "vgg19_bn": (_PAPER + " (E)", 143_678_248, 19_632_062_464, _BN_NOTE),
}


class VGG(Classifier):
    """VGG, NHWC, inputs of at least 32x32 (`variant`: `VARIANTS`).

    Taps of `features`: `stage{s}` (N, H/2^s, W/2^s, C_s) after each max pool; `pre_logits`
    (N, 4096), fc7's output after ReLU (the features of the lecture's nearest-neighbour figure);
    `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        check_image_batch(x, "VGG")
        v, kw = self.variant, self._kw
        taps, x = {}, x.astype(self.dtype)
        for s, widths in enumerate(v.stages, start=1):
            for c, width in enumerate(widths, start=1):
                x = VGGConv(width, v.batch_norm, name=f"stage{s}_conv{c}", **kw)(x, train=train)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            taps[f"stage{s}"] = x
        x = flatten_nchw(adaptive_avg_pool(x, 7))
        x = nn.relu(torch_dense(v.fc[0], x.shape[-1], "fc6", **kw)(x))
        x = nn.Dropout(v.dropout, deterministic=not train)(x)
        x = nn.relu(torch_dense(v.fc[1], v.fc[0], "fc7", **kw)(x))
        taps["pre_logits"] = x
        x = nn.Dropout(v.dropout, deterministic=not train)(x)
        taps["logits"] = torch_dense(self.num_classes, v.fc[1], "head", **kw)(x)
        return taps


class VGGConv(nn.Module):
    """3x3 convolution (with bias, padding 1) -> optional BatchNorm -> ReLU."""

    features: int
    batch_norm: bool
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        # torchvision: kaiming_normal_(fan_out, relu) weights, zero biases.
        x = nn.Conv(
            self.features,
            (3, 3),
            padding=((1, 1), (1, 1)),
            kernel_init=conv_kernel_init,
            name="conv",
            **kw,
        )(x)
        if self.batch_norm:
            x = nn.BatchNorm(
                use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn", **kw
            )(x)
        return nn.relu(x)


def registry_entries():
    """(name, family, module, variant, native resolution, smallest input side) of each variant."""
    for name, variant in VARIANTS.items():
        yield name, "vgg", VGG, variant, 224, 32
