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

from jaxcnn.layers import batch_norm, conv2d, torch_dense
from jaxcnn.models.base import Classifier, check_image_batch
from jaxcnn.models.resnet import ResNetVariant


@dataclasses.dataclass(frozen=True)
class PreActVariant(ResNetVariant):
    """A `ResNetVariant` plus `stem_norm`: BN + ReLU after the ImageNet stem conv, as the paper's
    Torch code (and pytorchcv) have; timm's resnetv2 has none (the first unit's BN follows)."""

    stem_norm: bool = False


class PreActBlock(nn.Module):
    """A pre-activation unit: basic (two 3x3) or bottleneck (1x1, 3x3, 1x1, expansion 4)."""

    planes: int
    strides: int
    variant: PreActVariant
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        v, kw = self.variant, {"dtype": self.dtype, "param_dtype": self.param_dtype}
        out = self.planes * v.expansion
        pre = nn.relu(batch_norm(train, name="norm1", **kw)(x))
        shortcut = x
        if self.strides != 1 or x.shape[-1] != out:
            shortcut = conv2d(out, 1, self.strides, name="downsample", **kw)(pre)
        if v.block == "basic":
            y = conv2d(self.planes, 3, self.strides, name="conv1", **kw)(pre)
            y = conv2d(self.planes, 3, 1, name="conv2", **kw)(
                nn.relu(batch_norm(train, name="norm2", **kw)(y))
            )
        else:
            width = int(self.planes * (v.width_per_group / 64.0)) * v.groups
            s1, s3 = (self.strides, 1) if v.stride_in_1x1 else (1, self.strides)
            y = conv2d(width, 1, s1, name="conv1", **kw)(pre)
            y = conv2d(width, 3, s3, name="conv2", **kw)(
                nn.relu(batch_norm(train, name="norm2", **kw)(y))
            )
            y = conv2d(out, 1, 1, name="conv3", **kw)(
                nn.relu(batch_norm(train, name="norm3", **kw)(y))
            )
        return y + shortcut


class PreActResNet(Classifier):
    """Pre-activation ResNet, NHWC (`variant`: a `ResNetVariant` from `VARIANTS`).

    Taps of `features`: `stem` ((N, H/4, W/4, 64) after the max pool for ImageNet stems); `stage{i}`,
    each stage's output (before any normalisation); `pre_logits`, (N, C_last) after the final
    BN + ReLU and global pooling; `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        check_image_batch(x, "PreActResNet")
        v, kw = self.variant, self._kw
        taps, x = {}, x.astype(self.dtype)
        if v.stem == "imagenet":
            x = conv2d(64, 7, 2, name="stem_conv", **kw)(x)
            if v.stem_norm:
                x = nn.relu(batch_norm(train, name="stem_norm", **kw)(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = conv2d(v.widths[0], 3, 1, name="stem_conv", **kw)(x)
        taps["stem"] = x
        for s, (depth, planes) in enumerate(zip(v.depths, v.widths, strict=True), start=1):
            for b in range(1, depth + 1):
                strides = 2 if (b == 1 and s > 1) else 1
                x = PreActBlock(planes, strides, v, name=f"stage{s}_block{b}", **kw)(x, train=train)
            taps[f"stage{s}"] = x
        x = nn.relu(batch_norm(train, name="final_norm", **kw)(x))
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        taps["logits"] = torch_dense(self.num_classes, x.shape[-1], "head", **kw)(x)
        return taps


def _cifar(block: str, n: int) -> PreActVariant:
    return ResNetVariant(
        block=block, depths=(n, n, n), widths=(16, 32, 64), stem="cifar", num_classes=10
    )


VARIANTS: dict[str, PreActVariant] = {
    "resnetv2_18": PreActVariant("basic", (2, 2, 2, 2)),
    "resnetv2_34": PreActVariant("basic", (3, 4, 6, 3)),
    "resnetv2_50": PreActVariant("bottleneck", (3, 4, 6, 3)),
    "resnetv2_101": PreActVariant("bottleneck", (3, 4, 23, 3)),
    "resnetv2_152": PreActVariant("bottleneck", (3, 8, 36, 3)),
    # timm has no resnetv2_200: this one is the paper's build (stem BN, stride on the 1x1).
    "resnetv2_200": PreActVariant("bottleneck", (3, 24, 36, 3), stem_norm=True, stride_in_1x1=True),
    "preact_resnet110": _cifar("basic", 18),  # 6n + 2
    "preact_resnet164": _cifar("bottleneck", 18),  # 9n + 2
    "preact_resnet1001": _cifar("bottleneck", 111),
}

_P = "He et al. 2016, Identity Mappings in Deep Residual Networks"
_SAME = "MACs as the post-activation ResNet of the same depth (identical conv shapes)"
_TIMM = "timm's resnetv2 layout (stride on the 3x3)"
# Params of 18/34/101/152: measured on timm 1.0.31's resnetv2_* (random init; tests/test_convert.py
# compares with timm); 50, 200 and the CIFAR nets: ../shared/reference.
REFERENCE: dict[str, tuple[str, int, int, str]] = {
    "resnetv2_18": (_P, 11_687_720, 1_814_073_344, f"{_TIMM}; {_SAME}"),
    "resnetv2_34": (_P, 21_795_880, 3_663_761_408, f"{_TIMM}; {_SAME}"),
    "resnetv2_50": (_P, 25_549_352, 4_089_184_256, _TIMM),
    "resnetv2_101": (_P, 44_541_480, 7_801_405_440, f"{_TIMM}; {_SAME}"),
    "resnetv2_152": (
        _P + ", Table 5",
        60_185_128,
        11_513_626_624,
        f"{_TIMM}; {_SAME}; stem_norm=True, stride_in_1x1=True is the paper's build "
        "(60,185,256 params, 11.28 GMACs)",
    ),
    "resnetv2_200": (
        _P + ", Table 5",
        64_666_280,
        14_776_270_848,
        "the paper's build: BN + ReLU after the stem conv, stride on the bottleneck's 1x1",
    ),
    "preact_resnet110": (_P + ", Table 3 (CIFAR-10)", 1_730_522, 253_149_824, ""),
    "preact_resnet164": (_P + ", Table 3 (CIFAR-10, bottleneck)", 1_703_258, 247_646_720, ""),
    "preact_resnet1001": (
        _P + ", Tables 3-4 (CIFAR-10, bottleneck)",
        10_327_706,
        1_490_995_712,
        "",
    ),
}


def registry_entries():
    """(name, family, module, variant, native resolution, smallest input side) of each variant."""
    for name, v in VARIANTS.items():
        cifar = v.stem == "cifar"
        family = "resnet_v2_cifar" if cifar else "resnet_v2"
        yield name, family, PreActResNet, v, 32 if cifar else 224, v.total_stride
