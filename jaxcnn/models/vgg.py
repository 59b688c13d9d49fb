"""VGG-11/13/16/19 with and without BatchNorm (Simonyan & Zisserman 2015, Table 1 configs A, B, D, E).

torchvision's layout, for weight compatibility: every 3x3 convolution keeps its bias (also in the BN
variants, which the paper predates), an adaptive average pool to 7x7 precedes the classifier (an
identity at 224x224; it lets smaller inputs through), and the classifier is
fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> head.

Parameter tree: `stage{s}_conv{c}/{conv[,bn]}`, `fc6`, `fc7`, `head`.
"""

import dataclasses

import flax.linen as nn
import jax

from jaxcnn.layers import ConvBN, torch_dense
from jaxcnn.layers.pooling import adaptive_avg_pool, flatten_nchw
from jaxcnn.models.base import Classifier, ModelSpec


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


class VGG(Classifier):
    """VGG, NHWC, inputs of at least 32x32 (`variant`: `VARIANTS`).

    Taps of `features`: `stage{s}` (N, H/2^s, W/2^s, C_s) after each max pool; `pre_logits`
    (N, 4096), fc7's output after ReLU (the features of the lecture's nearest-neighbour figure);
    `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        for s, widths in enumerate(v.stages, start=1):
            for c, width in enumerate(widths, start=1):
                # torchvision: kaiming_normal_(fan_out, relu) weights, zero biases, also before BN.
                x = ConvBN(width, use_bias=True, norm=v.batch_norm, name=f"stage{s}_conv{c}", **kw)(
                    x, train=train
                )
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


_PAPER = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks (arXiv 1409.1556), Table 1"
_BN_NOTE = "BatchNorm after each conv (torchvision; the paper predates BN); conv biases kept"
_CONFIG_LETTER = {11: "A", 13: "B", 16: "D", 19: "E"}
MODELS = tuple(
    ModelSpec(
        f"vgg{d}{bn}",
        "vgg",
        VGG,
        VARIANTS[f"vgg{d}{bn}"],
        224,
        32,
        f"{_PAPER} ({letter})",
        _BN_NOTE if bn else "",
        f"vgg{d}{bn}",
    )
    for bn in ("", "_bn")
    for d, letter in _CONFIG_LETTER.items()
)
