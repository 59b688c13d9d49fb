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

import dataclasses
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, torch_dense
from jaxcnn.models.base import Classifier, check_image_batch


@dataclasses.dataclass(frozen=True)
class ResNetVariant:
    """One ResNet variant, as data.

    Attributes:
        block: "basic" (two 3x3 convs, expansion 1) or "bottleneck" (1x1-3x3-1x1, expansion 4).
        depths: number of blocks in each stage.
        widths: base channels ("planes") of each stage; the block output is `planes * expansion`.
        stem: "imagenet" (7x7/2 conv + 3x3/2 max pool, 64 channels) or "cifar" (3x3 conv, widths[0]).
        groups: cardinality of the grouped 3x3 convolution (ResNeXt).
        width_per_group: bottleneck width per group; the 3x3 has `planes * width_per_group / 64 * groups`
            channels (64 -> plain ResNet, 128 -> Wide ResNet-50-2, 4 with 32 groups -> ResNeXt 32x4d).
        shortcut: "projection" (1x1 conv + BN when the shape changes, option B), "zero_pad" (identity
            with stride-2 subsampling and zero channel padding, option A, parameter-free), or "none"
            (the plain networks of the paper's Fig. 6).
        stride_in_1x1: put a bottleneck's stride on its first 1x1 conv (the paper, v1) instead of on
            its 3x3 (torchvision, v1.5).
        zero_init_residual: start each residual branch's last BN scale at zero (Goyal et al. 2017),
            as torchvision's `zero_init_residual=True`.
        num_classes: classes of the native head.
    """

    block: Literal["basic", "bottleneck"]
    depths: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: Literal["imagenet", "cifar"] = "imagenet"
    groups: int = 1
    width_per_group: int = 64
    shortcut: Literal["projection", "zero_pad", "none"] = "projection"
    stride_in_1x1: bool = False
    zero_init_residual: bool = False
    num_classes: int = 1000

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def total_stride(self) -> int:
        """Downsampling factor from the input to the last stage."""
        stem = 4 if self.stem == "imagenet" else 1
        return stem * 2 ** (len(self.depths) - 1)


def _imagenet(block: str, depths: tuple[int, ...], **kw: Any) -> ResNetVariant:
    return ResNetVariant(block=block, depths=depths, **kw)


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
VARIANTS: dict[str, ResNetVariant] = {
    "resnet18": _imagenet("basic", (2, 2, 2, 2)),
    "resnet34": _imagenet("basic", (3, 4, 6, 3)),
    "resnet50": _imagenet("bottleneck", (3, 4, 6, 3)),
    "resnet101": _imagenet("bottleneck", (3, 4, 23, 3)),
    "resnet152": _imagenet("bottleneck", (3, 8, 36, 3)),
    "resnet200": _imagenet("bottleneck", (3, 24, 36, 3)),
    "wide_resnet50_2": _imagenet("bottleneck", (3, 4, 6, 3), width_per_group=128),
    "wide_resnet101_2": _imagenet("bottleneck", (3, 4, 23, 3), width_per_group=128),
    "resnext50_32x4d": _imagenet("bottleneck", (3, 4, 6, 3), groups=32, width_per_group=4),
    "resnext101_32x8d": _imagenet("bottleneck", (3, 4, 23, 3), groups=32, width_per_group=8),
    "resnext101_64x4d": _imagenet("bottleneck", (3, 4, 23, 3), groups=64, width_per_group=4),
    **{f"resnet{6 * n + 2}": _cifar(n) for n in (1, 3, 5, 7, 9, 18, 200)},
    **{f"plain{6 * n + 2}": _cifar(n, shortcut="none") for n in (3, 5, 7, 9, 18)},
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34 and the CIFAR ResNets)."""

    planes: int
    strides: int
    variant: ResNetVariant
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        v, kw = self.variant, {"dtype": self.dtype, "param_dtype": self.param_dtype}
        last_scale = nn.initializers.zeros if v.zero_init_residual else nn.initializers.ones
        y = ConvBN(self.planes, 3, self.strides, name="conv1", **kw)(x, train=train)
        y = ConvBN(self.planes, 3, 1, act=None, scale_init=last_scale, name="conv2", **kw)(
            y, train=train
        )
        return nn.relu(y + _identity(x, self.planes, self.strides, v.shortcut, train, kw))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (grouped for ResNeXt) -> 1x1 expand, with a residual connection."""

    planes: int
    strides: int
    variant: ResNetVariant
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        v, kw = self.variant, {"dtype": self.dtype, "param_dtype": self.param_dtype}
        width = int(self.planes * (v.width_per_group / 64.0)) * v.groups
        s1, s3 = (self.strides, 1) if v.stride_in_1x1 else (1, self.strides)
        last_scale = nn.initializers.zeros if v.zero_init_residual else nn.initializers.ones
        out = self.planes * v.expansion
        y = ConvBN(width, 1, s1, name="conv1", **kw)(x, train=train)
        y = ConvBN(width, 3, s3, groups=v.groups, name="conv2", **kw)(y, train=train)
        y = ConvBN(out, 1, 1, act=None, scale_init=last_scale, name="conv3", **kw)(y, train=train)
        return nn.relu(y + _identity(x, out, self.strides, v.shortcut, train, kw))


def _identity(x, features, strides, kind, train, kw):
    """The block's shortcut path; called inside a block's compact `__call__`.

    Returns x itself when the shape is unchanged, else a 1x1 projection (`downsample`, option B) or
    the option-A identity; 0 for the plain networks.
    """
    if kind == "none":
        return 0.0
    if strides == 1 and x.shape[-1] == features:
        return x
    if kind == "projection":
        return ConvBN(features, 1, strides, act=None, name="downsample", **kw)(x, train=train)
    # Option A: subsample spatially, then zero-pad the new channels equally on both sides (the paper
    # does not say where the zeros go; this is the common CIFAR implementation's choice).
    x = x[:, ::strides, ::strides, :]
    extra = features - x.shape[-1]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))


class ResNet(Classifier):
    """ResNet / Wide ResNet / ResNeXt / CIFAR ResNet / plain network, NHWC (`variant`: `VARIANTS`).

    Taps of `features`: `stem`, (N, H/4, W/4, 64) for ImageNet stems (after the max pool),
    (N, H, W, widths[0]) for CIFAR stems; `stage{i}`, the output of stage i,
    (N, H/s, W/s, widths[i-1] * expansion) with s the stride so far; `pre_logits`, the globally
    average-pooled last stage, (N, C_last); `logits`, (N, num_classes).
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        check_image_batch(x, "ResNet")
        v, kw = self.variant, self._kw
        taps = {}
        x = x.astype(self.dtype)
        if v.stem == "imagenet":
            x = ConvBN(64, 7, 2, name="stem", **kw)(x, train=train)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = ConvBN(v.widths[0], 3, 1, name="stem", **kw)(x, train=train)
        taps["stem"] = x
        block_cls = Bottleneck if v.block == "bottleneck" else BasicBlock
        for s, (depth, planes) in enumerate(zip(v.depths, v.widths, strict=True), start=1):
            for b in range(1, depth + 1):
                strides = 2 if (b == 1 and s > 1) else 1
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

# name -> (paper, reference params, reference MACs at the native resolution, notes).
# Params and MACs: ../shared/reference/reference_numbers.md (torchvision / timm / paper-faithful builds;
# MACs count conv and linear layers only).
REFERENCE: dict[str, tuple[str, int, int, str]] = {
    "resnet18": (_HE2015 + ", Table 1", 11_689_512, 1_814_073_344, ""),
    "resnet34": (_HE2015 + ", Table 1", 21_797_672, 3_663_761_408, ""),
    "resnet50": (_HE2015 + ", Table 1", 25_557_032, 4_089_184_256, _V15),
    "resnet101": (_HE2015 + ", Table 1", 44_549_160, 7_801_405_440, _V15),
    "resnet152": (_HE2015 + ", Table 1", 60_192_808, 11_513_626_624, _V15),
    "resnet200": (
        "He et al. 2016, Identity Mappings in Deep Residual Networks, Table 5 (post-activation)",
        64_673_832,
        15_007_481_856,
        _V15 + "; timm resnet200",
    ),
    "wide_resnet50_2": (
        "Zagoruyko & Komodakis 2016, Wide Residual Networks",
        68_883_240,
        11_398_021_120,
        "torchvision's ImageNet WRN: bottleneck width x2; " + _V15,
    ),
    "wide_resnet101_2": (
        "Zagoruyko & Komodakis 2016, Wide Residual Networks",
        126_886_696,
        22_753_050_624,
        "torchvision's ImageNet WRN: bottleneck width x2; " + _V15,
    ),
    "resnext50_32x4d": (
        "Xie et al. 2017, Aggregated Residual Transformations (ResNeXt), Table 1",
        25_028_904,
        4_230_479_872,
        _V15,
    ),
    "resnext101_32x8d": (
        "Xie et al. 2017, ResNeXt (32x8d as released by torchvision)",
        88_791_336,
        16_414_015_488,
        _V15,
    ),
    "resnext101_64x4d": (
        "Xie et al. 2017, ResNeXt, Table 5",
        83_455_272,
        15_460_270_080,
        _V15,
    ),
    # resnet8 is the 6n+2 formula at n=1, not a row of the paper: the smallest member of the family,
    # used by the default quick training run. Params and MACs counted by hand (tests/test_models.py).
    "resnet8": (
        _HE2015 + ", Sec. 4.2 (6n+2 with n=1)",
        75_290,
        12_239_488,
        "not in the paper's table",
    ),
    "resnet20": (_HE2015 + ", Sec. 4.2, Table 6 (CIFAR-10)", 269_722, 40_551_040, ""),
    "resnet32": (_HE2015 + ", Sec. 4.2, Table 6 (CIFAR-10)", 464_154, 68_862_592, ""),
    "resnet44": (_HE2015 + ", Sec. 4.2, Table 6 (CIFAR-10)", 658_586, 97_174_144, ""),
    "resnet56": (_HE2015 + ", Sec. 4.2, Table 6 (CIFAR-10)", 853_018, 125_485_696, ""),
    "resnet110": (_HE2015 + ", Sec. 4.2, Table 6 (CIFAR-10)", 1_727_962, 252_887_680, ""),
    "resnet1202": (_HE2015 + ", Sec. 4.2, Table 6 (CIFAR-10)", 19_421_274, 2_829_238_912, ""),
    **{
        f"plain{d}": (_HE2015 + ", Sec. 4.2, Fig. 6 (plain nets, no shortcuts)", p, m, "")
        for d, p, m in (
            (20, 269_722, 40_551_040),
            (32, 464_154, 68_862_592),
            (44, 658_586, 97_174_144),
            (56, 853_018, 125_485_696),
            (110, 1_727_962, 252_887_680),
        )
    },
}


def registry_entries():
    """(name, family, module, variant, native resolution, smallest input side) of each variant."""
    for name, v in VARIANTS.items():
        cifar = v.stem == "cifar"
        yield (
            name,
            "resnet_cifar" if cifar else "resnet",
            ResNet,
            v,
            32 if cifar else 224,
            v.total_stride,
        )
