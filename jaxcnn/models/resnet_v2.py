"""Pre-activation ResNet ("ResNet v2"; He et al. 2016, "Identity Mappings in Deep Residual Networks").

Each residual unit is BN -> ReLU -> conv (x2 or x3) with a clean identity path; where the shape
changes, the shortcut is a 1x1 convolution (no BN) of the pre-activated input. There is no BN after
the stem (the first unit's own BN follows it) and one final BN -> ReLU before pooling.

- ImageNet depths 18-200, timm's `resnetv2_*` layout (stride on the bottleneck's 3x3, as
  ResNet v1.5; `stride_in_1x1=True` moves it to the 1x1 as in the paper's Torch code).
- CIFAR (Sec. 4): preact_resnet110 (basic units, 16-32-64), preact_resnet164 and preact_resnet1001
  (bottleneck units, outputs 64-128-256).

Parameter tree: `stem_conv`, `stage{s}_block{b}/{norm1,conv1,norm2,conv2[,norm3,conv3][,downsample]}`,
`final_norm`, `head`.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import bn_relu, conv2d, torch_dense
from jaxcnn.models.base import (
    RESNET_DEPTHS,
    Classifier,
    ModelSpec,
    ResNetBlock,
    ResNetVariant,
    stage_blocks,
)


@dataclasses.dataclass(frozen=True)
class PreActVariant(ResNetVariant):
    """A `ResNetVariant` plus `stem_norm`: BN + ReLU after the ImageNet stem conv, as the paper's
    Torch code (and pytorchcv) have; timm's resnetv2 has none (the first unit's BN follows)."""

    stem_norm: bool = False


class PreActBlock(ResNetBlock):
    """A pre-activation unit: basic (two 3x3) or bottleneck (1x1, 3x3, 1x1, expansion 4);
    `variant`: a `PreActVariant`."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        v, kw = self.variant, self._kw
        out = self.planes * v.expansion
        pre = bn_relu(x, train, "norm1", **kw)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != out:
            shortcut = conv2d(out, 1, self.strides, name="downsample", **kw)(pre)
        if v.block == "basic":
            y = conv2d(self.planes, 3, self.strides, name="conv1", **kw)(pre)
            y = conv2d(self.planes, 3, 1, name="conv2", **kw)(bn_relu(y, train, "norm2", **kw))
        else:
            width = v.bottleneck_width(self.planes)
            s1, s3 = v.block_strides(self.strides)
            y = conv2d(width, 1, s1, name="conv1", **kw)(pre)
            y = conv2d(width, 3, s3, name="conv2", **kw)(bn_relu(y, train, "norm2", **kw))
            y = conv2d(out, 1, 1, name="conv3", **kw)(bn_relu(y, train, "norm3", **kw))
        return y + shortcut


class PreActResNet(Classifier):
    """Pre-activation ResNet, NHWC (`variant`: a `ResNetVariant` from `VARIANTS`).

    Taps of `features`: `stem` ((N, H/4, W/4, 64) after the max pool for ImageNet stems); `stage{i}`,
    each stage's output (before any normalisation); `pre_logits`, (N, C_last) after the final
    BN + ReLU and global pooling; `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        if v.stem == "imagenet":
            x = conv2d(64, 7, 2, name="stem_conv", **kw)(x)
            if v.stem_norm:
                x = bn_relu(x, train, "stem_norm", **kw)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = conv2d(v.widths[0], 3, 1, name="stem_conv", **kw)(x)
        taps["stem"] = x
        for s, b, planes, strides in stage_blocks(v.depths, v.widths):
            x = PreActBlock(planes, strides, v, name=f"stage{s}_block{b}", **kw)(x, train=train)
            taps[f"stage{s}"] = x
        x = bn_relu(x, train, "final_norm", **kw)
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        taps["logits"] = torch_dense(self.num_classes, x.shape[-1], "head", **kw)(x)
        return taps


def _cifar(block: str, n: int) -> PreActVariant:
    return ResNetVariant(
        block=block, depths=(n, n, n), widths=(16, 32, 64), stem="cifar", num_classes=10
    )


VARIANTS: dict[str, PreActVariant] = {
    **{f"resnetv2_{d}": PreActVariant(*RESNET_DEPTHS[d]) for d in (18, 34, 50, 101, 152)},
    # timm has no resnetv2_200: this one is the paper's build (stem BN, stride on the 1x1).
    "resnetv2_200": PreActVariant(*RESNET_DEPTHS[200], stem_norm=True, stride_in_1x1=True),
    "preact_resnet110": _cifar("basic", 18),  # 6n + 2
    "preact_resnet164": _cifar("bottleneck", 18),  # 9n + 2
    "preact_resnet1001": _cifar("bottleneck", 111),
}

_P = "He et al. 2016, Identity Mappings in Deep Residual Networks"
_SAME = "MACs as the post-activation ResNet of the same depth (identical conv shapes)"
_TIMM = "timm's resnetv2 layout (stride on the 3x3)"
# name -> (paper, notes, reference key). resnetv2_18/34/101 have no row in the reference table,
# and resnetv2_152's row (preresnet152, whose published accuracy it shares) is the paper's build:
# their figures (timm 1.0.31's resnetv2_* counted) are in reference/supplement.json.
_ROWS: dict[str, tuple[str, str, str | None]] = {
    "resnetv2_18": (_P, f"{_TIMM}; {_SAME}", None),
    "resnetv2_34": (_P, f"{_TIMM}; {_SAME}", None),
    "resnetv2_50": (_P, _TIMM, "preresnet50_timm"),
    "resnetv2_101": (_P, f"{_TIMM}; {_SAME}", None),
    "resnetv2_152": (
        _P + ", Table 5",
        f"{_TIMM}; {_SAME}; stem_norm=True, stride_in_1x1=True is the paper's build "
        "(60,185,256 params, 11.28 GMACs)",
        "preresnet152",
    ),
    "resnetv2_200": (
        _P + ", Table 5",
        "the paper's build: BN + ReLU after the stem conv, stride on the bottleneck's 1x1",
        "preresnet200",
    ),
    "preact_resnet110": (_P + ", Table 3 (CIFAR-10)", "", "preresnet110_cifar"),
    "preact_resnet164": (_P + ", Table 3 (CIFAR-10, bottleneck)", "", "preresnet164_cifar"),
    "preact_resnet1001": (_P + ", Tables 3-4 (CIFAR-10, bottleneck)", "", "preresnet1001_cifar"),
}


def _spec(name: str, v: PreActVariant) -> ModelSpec:
    cifar = v.stem == "cifar"
    family = "resnet_v2_cifar" if cifar else "resnet_v2"
    return ModelSpec(
        name, family, PreActResNet, v, 32 if cifar else 224, v.total_stride, *_ROWS[name]
    )


MODELS = tuple(_spec(name, v) for name, v in VARIANTS.items())
