"""ResNet family: ResNet v1 / v1.5, Wide ResNet, ResNeXt, the CIFAR ResNets and their plain twins.

Papers:
- He et al. 2015, "Deep Residual Learning for Image Recognition" (arXiv 1512.03385): Table 1 gives the
  ImageNet stage depths, Sec. 4.2 the CIFAR networks (6n+2 layers, widths 16-32-64, option-A
  parameter-free shortcuts) and the plain networks without shortcuts.
- Zagoruyko & Komodakis 2016, "Wide Residual Networks": torchvision's `wide_resnet50_2` doubles the
  bottleneck width.
- Xie et al. 2017, "Aggregated Residual Transformations" (ResNeXt): grouped 3x3 convolutions,
  `cardinality x bottleneck width` (32x4d).

Deviation kept as an option: torchvision (and "ResNet v1.5") put the stride-2 of a bottleneck block on
its 3x3 convolution; the paper (v1) puts it on the first 1x1. `stride_in_1x1=True` gives the paper's.
Parameters are the same; MACs differ (4.09 G vs 3.86 G for ResNet-50 at 224).

Parameter tree (a public contract: checkpoints and the torchvision converter depend on it):
`stem/{conv,bn}`, `stage{s}_block{b}/{conv1,conv2[,conv3],downsample}/{conv,bn}`, `head`.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, torch_dense
from jaxcnn.models.base import (
    RESNET_DEPTHS,
    Classifier,
    ModelSpec,
    ResNetBlock,
    ResNetVariant,
    stage_blocks,
)

__all__ = ["VARIANTS", "BasicBlock", "Bottleneck", "ResNet", "ResNetVariant"]


def _cifar(n: int, shortcut: str = "zero_pad") -> ResNetVariant:
    # He et al. 2015 Sec. 4.2: 6n+2 layers, three stages of n basic blocks at 16, 32, 64 filters.
    return ResNetVariant(
        block="basic",
        depths=(n, n, n),
        widths=(16, 32, 64),
        stem="cifar",
        shortcut=shortcut,
        num_classes=10,
    )


# He et al. 2015, Table 1; resnet200 from He et al. 2016 ("Identity Mappings"), Table 5.
def _imagenet(depth: int, **kw: Any) -> ResNetVariant:
    return ResNetVariant(*RESNET_DEPTHS[depth], **kw)


VARIANTS: dict[str, ResNetVariant] = {
    **{f"resnet{d}": _imagenet(d) for d in RESNET_DEPTHS},
    "wide_resnet50_2": _imagenet(50, width_per_group=128),
    "wide_resnet101_2": _imagenet(101, width_per_group=128),
    "resnext50_32x4d": _imagenet(50, groups=32, width_per_group=4),
    "resnext101_32x8d": _imagenet(101, groups=32, width_per_group=8),
    "resnext101_64x4d": _imagenet(101, groups=64, width_per_group=4),
    **{f"resnet{6 * n + 2}": _cifar(n) for n in (1, 3, 5, 7, 9, 18, 200)},
    **{f"plain{6 * n + 2}": _cifar(n, shortcut="none") for n in (3, 5, 7, 9, 18)},
}


class _Block(ResNetBlock):
    """A post-activation residual block (`variant`: a `ResNetVariant`)."""

    def last_scale(self) -> nn.initializers.Initializer:
        """BN scale init of the branch's last conv (zero with `zero_init_residual`)."""
        return nn.initializers.zeros if self.variant.zero_init_residual else nn.initializers.ones

    def shortcut(self, x: jax.Array, features: int, train: bool) -> jax.Array | float:
        """The block's shortcut path; called inside the block's compact `__call__`.

        Returns x itself when the shape is unchanged, else a 1x1 projection (`downsample`, option
        B) or the option-A identity; 0 for the plain networks.
        """
        kind, strides = self.variant.shortcut, self.strides
        if kind == "none":
            return 0.0
        if strides == 1 and x.shape[-1] == features:
            return x
        if kind == "projection":
            return ConvBN(features, 1, strides, act=None, name="downsample", **self._kw)(
                x, train=train
            )
        # Option A: subsample spatially, then zero-pad the new channels equally on both sides (the
        # paper does not say where the zeros go; this is the common CIFAR implementation's choice).
        x = x[:, ::strides, ::strides, :]
        extra = features - x.shape[-1]
        return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))


class BasicBlock(_Block):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34 and the CIFAR ResNets)."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw = self._kw
        y = ConvBN(self.planes, 3, self.strides, name="conv1", **kw)(x, train=train)
        y = ConvBN(self.planes, 3, act=None, scale_init=self.last_scale(), name="conv2", **kw)(
            y, train=train
        )
        return nn.relu(y + self.shortcut(x, self.planes, train))


class Bottleneck(_Block):
    """1x1 reduce -> 3x3 (grouped for ResNeXt) -> 1x1 expand, with a residual connection."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        v, kw = self.variant, self._kw
        width = v.bottleneck_width(self.planes)
        s1, s3 = v.block_strides(self.strides)
        out = self.planes * v.expansion
        y = ConvBN(width, 1, s1, name="conv1", **kw)(x, train=train)
        y = ConvBN(width, 3, s3, groups=v.groups, name="conv2", **kw)(y, train=train)
        y = ConvBN(out, 1, act=None, scale_init=self.last_scale(), name="conv3", **kw)(
            y, train=train
        )
        return nn.relu(y + self.shortcut(x, out, train))


class ResNet(Classifier):
    """ResNet / Wide ResNet / ResNeXt / CIFAR ResNet / plain network, NHWC (`variant`: `VARIANTS`).

    Taps of `features`: `stem`, (N, H/4, W/4, 64) for ImageNet stems (after the max pool),
    (N, H, W, widths[0]) for CIFAR stems; `stage{i}`, the output of stage i,
    (N, H/s, W/s, widths[i-1] * expansion) with s the stride so far; `pre_logits`, the globally
    average-pooled last stage, (N, C_last); `logits`, (N, num_classes).
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        if v.stem == "imagenet":
            x = ConvBN(64, 7, 2, name="stem", **kw)(x, train=train)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = ConvBN(v.widths[0], 3, 1, name="stem", **kw)(x, train=train)
        taps["stem"] = x
        block_cls = Bottleneck if v.block == "bottleneck" else BasicBlock
        for s, b, planes, strides in stage_blocks(v.depths, v.widths):
            x = block_cls(planes, strides, v, name=f"stage{s}_block{b}", **kw)(x, train=train)
            taps[f"stage{s}"] = x
        x = jnp.mean(x, axis=(1, 2))
        taps["pre_logits"] = x
        taps["logits"] = torch_dense(self.num_classes, x.shape[-1], "head", **kw)(x)
        return taps


_HE2015 = "He et al. 2015, Deep Residual Learning for Image Recognition (arXiv 1512.03385)"
_V15 = (
    "torchvision's v1.5: stride 2 on the bottleneck's 3x3 (the paper: on the first 1x1; "
    "stride_in_1x1=True)"
)
_WRN = "Zagoruyko & Komodakis 2016, Wide Residual Networks"
_CIFAR_TABLE = _HE2015 + ", Sec. 4.2, Table 6 (CIFAR-10)"
_PLAIN = _HE2015 + ", Sec. 4.2, Fig. 6 (plain nets, no shortcuts)"

# name -> (paper, notes); the reference key is the name (CIFAR networks: name + "_cifar").
_PAPERS: dict[str, tuple[str, str]] = {
    "resnet18": (_HE2015 + ", Table 1", ""),
    "resnet34": (_HE2015 + ", Table 1", ""),
    "resnet50": (_HE2015 + ", Table 1", _V15),
    "resnet101": (_HE2015 + ", Table 1", _V15),
    "resnet152": (_HE2015 + ", Table 1", _V15),
    "resnet200": (
        "He et al. 2016, Identity Mappings in Deep Residual Networks, Table 5 (post-activation)",
        _V15 + "; timm resnet200",
    ),
    "wide_resnet50_2": (_WRN, "torchvision's ImageNet WRN: bottleneck width x2; " + _V15),
    "wide_resnet101_2": (_WRN, "torchvision's ImageNet WRN: bottleneck width x2; " + _V15),
    "resnext50_32x4d": (
        "Xie et al. 2017, Aggregated Residual Transformations (ResNeXt), Table 1",
        _V15,
    ),
    "resnext101_32x8d": ("Xie et al. 2017, ResNeXt (32x8d as released by torchvision)", _V15),
    "resnext101_64x4d": ("Xie et al. 2017, ResNeXt, Table 5", _V15),
    # resnet8 is the 6n+2 formula at n=1, not a row of the paper: the smallest member of the
    # family, used by the default quick training run (figures: reference/supplement.json).
    "resnet8": (_HE2015 + ", Sec. 4.2 (6n+2 with n=1)", "not in the paper's table"),
    **{f"resnet{d}": (_CIFAR_TABLE, "") for d in (20, 32, 44, 56, 110, 1202)},
    **{f"plain{d}": (_PLAIN, "") for d in (20, 32, 44, 56, 110)},
}


def _spec(name: str, v: ResNetVariant) -> ModelSpec:
    cifar = v.stem == "cifar"
    return ModelSpec(
        name,
        "resnet_cifar" if cifar else "resnet",
        ResNet,
        v,
        32 if cifar else 224,
        v.total_stride,
        *_PAPERS[name],
        reference_key=None if name == "resnet8" else f"{name}_cifar" if cifar else name,
    )


MODELS = tuple(_spec(name, v) for name, v in VARIANTS.items())
