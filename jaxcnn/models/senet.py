"""Squeeze-and-Excitation networks: SE-ResNet, SE-ResNeXt and SENet-154 (Hu et al. 2018).

Paper: Hu, Shen, Albanie, Sun, Wu, "Squeeze-and-Excitation Networks" (CVPR 2018 / TPAMI, arXiv
1709.01507). Table 1 gives SE-ResNet-50 and SE-ResNeXt-50 (32x4d); Sec. 6.1 / Table 8 SENet-154, an
SE-ResNeXt-152 (64x4d) with the changes of the paper's Appendix (a 1x1 reduce to half the grouped
3x3's width, a stem of three 3x3 convolutions, 3x3 stride-2 projection shortcuts, dropout 0.2 before
the classifier).

The layout is that of the authors' released Caffe models as ported by Cadene's
`pretrainedmodels` and kept by timm as `legacy_se*` / `legacy_senet154`, so their weights convert:
- SE-ResNet puts a bottleneck's stride on its first 1x1 convolution (the Caffe / paper "v1"
  placement); SE-ResNeXt and SENet-154 put it on the grouped 3x3 (`stride_in_1x1`).
- The stem's 3x3/2 max pool has no padding and rounds up (PyTorch `ceil_mode=True`, kept "for
  compatibility with Caffe weights"); at even sizes it gives the same shape as padding 1.
- Stage 1's projection is a 1x1 convolution even in SENet-154 (only stages 2-4 use 3x3).

Each residual branch ends conv3 -> BN -> squeeze-excite (reduction 16, 1x1 convs with bias) before
the addition.

Parameter tree (a public contract: checkpoints and the converter depend on it):
`stem_conv{i}/{conv,bn}`, `stage{s}_block{b}/{conv1,conv2,conv3,downsample}/{conv,bn}`,
`stage{s}_block{b}/se/{fc1,fc2}`, `head`.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, SqueezeExcite, torch_dense
from jaxcnn.layers.pooling import max_pool
from jaxcnn.models.base import Classifier, ModelSpec, ResNetBlock, stage_blocks


@dataclasses.dataclass(frozen=True)
class SENetVariant:
    """One SENet variant, as data.

    Attributes:
        depths: bottleneck blocks in each stage.
        widths: base channels ("planes") of each stage; a block outputs `4 * planes`.
        groups: cardinality of the grouped 3x3 convolution (1: SE-ResNet).
        width_per_group: the 3x3 has `floor(planes * width_per_group / 64) * groups` channels
            (64 with 1 group: SE-ResNet; 4 with 32 groups: SE-ResNeXt 32x4d).
        conv1_ratio: channels of the first 1x1 as a fraction of the 3x3's (SENet-154: 0.5).
        stride_in_1x1: a stage's stride on the first 1x1 (SE-ResNet, Caffe) instead of the 3x3.
        reduction: squeeze-excite reduction ratio r (hidden = channels // r).
        stem_widths: output channels of the stem's convolutions; the first has stride 2.
        stem_kernel: kernel side of the stem's convolutions (7: one 7x7; 3: SENet-154's three 3x3).
        downsample_kernel: kernel side of the projection shortcuts of stages 2+ (SENet-154: 3).
        dropout: dropout rate before the classifier (train mode only; SENet-154: 0.2).
        num_classes: classes of the native head.
    """

    depths: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    groups: int = 1
    width_per_group: int = 64
    conv1_ratio: float = 1.0
    stride_in_1x1: bool = False
    reduction: int = 16
    stem_widths: tuple[int, ...] = (64,)
    stem_kernel: int = 7
    downsample_kernel: int = 1
    dropout: float = 0.0
    num_classes: int = 1000

    expansion = 4  # class constant, not a field

    @property
    def total_stride(self) -> int:
        """Downsampling factor from the input to the last stage (stem conv, max pool, stages)."""
        return 4 * 2 ** (len(self.depths) - 1)


def _se_resnet(depths: tuple[int, ...]) -> SENetVariant:
    return SENetVariant(depths=depths, stride_in_1x1=True)


def _se_resnext(depths: tuple[int, ...]) -> SENetVariant:
    return SENetVariant(depths=depths, groups=32, width_per_group=4)


VARIANTS: dict[str, SENetVariant] = {
    "se_resnet50": _se_resnet((3, 4, 6, 3)),
    "se_resnet101": _se_resnet((3, 4, 23, 3)),
    "se_resnet152": _se_resnet((3, 8, 36, 3)),
    "se_resnext50_32x4d": _se_resnext((3, 4, 6, 3)),
    "se_resnext101_32x4d": _se_resnext((3, 4, 23, 3)),
    "senet154": SENetVariant(
        depths=(3, 8, 36, 3),
        groups=64,
        width_per_group=4,
        conv1_ratio=0.5,
        stem_widths=(64, 64, 128),
        stem_kernel=3,
        downsample_kernel=3,
        dropout=0.2,
    ),
}


class SEBottleneck(ResNetBlock):
    """1x1 -> 3x3 (grouped) -> 1x1 -> squeeze-excite, added to the (projected) input, then ReLU;
    `variant`: a `SENetVariant`, `downsample_kernel`: kernel of the projection shortcut."""

    downsample_kernel: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        v, kw = self.variant, self._kw
        width = math.floor(self.planes * v.width_per_group / 64) * v.groups
        out = self.planes * v.expansion
        reduce = int(width * v.conv1_ratio)
        if width == 0 or reduce % v.groups:
            raise ValueError(
                f"SENet: planes {self.planes} give a 3x3 of {width} channels fed by {reduce}, "
                f"which must be positive and divisible by its {v.groups} groups; use wider "
                "`widths` or fewer `groups`"
            )
        s1, s3 = (self.strides, 1) if v.stride_in_1x1 else (1, self.strides)
        y = ConvBN(reduce, 1, s1, name="conv1", **kw)(x, train=train)
        y = ConvBN(width, 3, s3, groups=v.groups, name="conv2", **kw)(y, train=train)
        y = ConvBN(out, 1, 1, act=None, name="conv3", **kw)(y, train=train)
        y = SqueezeExcite(out // v.reduction, name="se", **kw)(y)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != out:
            shortcut = ConvBN(
                out, self.downsample_kernel, self.strides, act=None, name="downsample", **kw
            )(x, train=train)
        return nn.relu(y + shortcut)


class SENet(Classifier):
    """SE-ResNet / SE-ResNeXt / SENet-154, NHWC (`variant`: a `SENetVariant` from `VARIANTS`).

    Taps of `features`: `stem`, (N, ~H/4, ~W/4, stem_widths[-1]) after the max pool; `stage{i}`, the
    output of stage i, (N, ~H/s, ~W/s, 4 * widths[i-1]) with s the stride so far (4, 8, 16, 32;
    sides round up); `pre_logits`, the globally average-pooled last stage, (N, 4 * widths[-1]);
    `logits`, (N, num_classes).
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        for i, width in enumerate(v.stem_widths, start=1):
            strides = 2 if i == 1 else 1
            x = ConvBN(width, v.stem_kernel, strides, name=f"stem_conv{i}", **kw)(x, train=train)
        # PyTorch `MaxPool2d(3, stride=2, ceil_mode=True)` without padding (Caffe's rounding).
        taps["stem"] = x = max_pool(x, 3, 2, ceil=True)
        for s, b, planes, strides in stage_blocks(v.depths, v.widths):
            # Stage 1 keeps the resolution; its projection (channels only) is 1x1 in every variant.
            ds_kernel = 1 if s == 1 else v.downsample_kernel
            x = SEBottleneck(planes, strides, v, ds_kernel, name=f"stage{s}_block{b}", **kw)(
                x, train=train
            )
            taps[f"stage{s}"] = x
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        if v.dropout > 0:
            x = nn.Dropout(v.dropout, deterministic=not train)(x)
        taps["logits"] = torch_dense(self.num_classes, x.shape[-1], "head", **kw)(x)
        return taps


_HU = "Hu et al. 2018, Squeeze-and-Excitation Networks (arXiv 1709.01507)"
_CAFFE = "stride on the first 1x1 (the authors' Caffe models, timm legacy_seresnet*)"
_NEXT = "stride on the grouped 3x3 (timm legacy_seresnext*)"
_TIMM_DROP = (
    "; no dropout, as the paper and Cadene's port (timm's legacy SENet class applies 0.2 before the "
    "classifier to every variant: dropout=0.2)"
)

# name -> (paper, notes). se_resnet50, se_resnext50_32x4d and senet154 have rows in the reference
# table (timm legacy_* builds); the other three do not: their figures (params: timm 1.0.31's
# legacy_* models counted; MACs: an analytic conv + linear count) are in reference/supplement.json.
_PAPERS: dict[str, tuple[str, str]] = {
    "se_resnet50": (_HU + ", Table 1", _CAFFE + _TIMM_DROP),
    "se_resnet101": (
        _HU + ", Table 2",
        _CAFFE + _TIMM_DROP + "; params: timm legacy_seresnet101, MACs: analytic count",
    ),
    "se_resnet152": (
        _HU + ", Table 2",
        _CAFFE + _TIMM_DROP + "; params: timm legacy_seresnet152, MACs: analytic count",
    ),
    "se_resnext50_32x4d": (_HU + ", Table 1", _NEXT + _TIMM_DROP),
    "se_resnext101_32x4d": (
        _HU + ", Table 2",
        _NEXT + _TIMM_DROP + "; params: timm legacy_seresnext101_32x4d, MACs: analytic count",
    ),
    "senet154": (
        _HU + ", Sec. 6.1 / Table 8 and Appendix",
        "timm legacy_senet154 (the authors' released model)",
    ),
}
_ROWS = ("se_resnet50", "se_resnext50_32x4d", "senet154")
MODELS = tuple(
    ModelSpec(
        name,
        "senet",
        SENet,
        v,
        224,
        v.total_stride,
        *_PAPERS[name],
        reference_key=name if name in _ROWS else None,
    )
    for name, v in VARIANTS.items()
)
