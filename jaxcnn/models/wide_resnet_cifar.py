"""Wide Residual Networks for CIFAR (Zagoruyko & Komodakis 2016, "Wide Residual Networks").

WRN-d-k (Table 1): a 3x3 stem conv with 16 channels, three stages of n = (d - 4) / 6 pre-activation
basic blocks of widths 16k, 32k, 64k (strides 1, 2, 2), a final BN -> ReLU, global average pooling
and a linear classifier. A block is BN -> ReLU -> conv3x3 -> BN -> ReLU -> [dropout] -> conv3x3; its
shortcut is the identity, or a 1x1 convolution of the pre-activated input where the shape changes
(as the authors' code, which also applies the dropout to the second conv's input). All convolutions
are bias-free. The paper's dropout variant ("WRN-28-10 + dropout", rate 0.3) is `dropout=0.3`; the
default 0 is the network of the reference parameter counts (dropout adds no parameters).

The ImageNet bottleneck `wide_resnet50_2` / `wide_resnet101_2` live in `resnet.py`.

Parameter tree: `stem_conv`, `stage{s}_block{b}/{norm1,conv1,norm2,conv2[,downsample]}`,
`final_norm`, `head`.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import bn_relu, conv2d, torch_dense
from jaxcnn.models.base import Classifier, ModelSpec, Module, stage_blocks


@dataclasses.dataclass(frozen=True)
class WRNVariant:
    """One WRN-d-k, as data.

    Attributes:
        depth: d = 6n + 4 (convolutions plus the classifier, not counting the 1x1 shortcuts).
        widen_factor: k; stage widths are `base_widths * k`.
        dropout: rate between a block's two convolutions (train mode only; the paper: 0.3).
        base_widths: stage widths of the k = 1 network (the paper's 16, 32, 64).
        stem_width: channels of the stem convolution (16).
        num_classes: classes of the native head (CIFAR-10).
    """

    depth: int
    widen_factor: int
    dropout: float = 0.0
    base_widths: tuple[int, ...] = (16, 32, 64)
    stem_width: int = 16
    num_classes: int = 10

    def __post_init__(self):
        if self.depth < 10 or (self.depth - 4) % 6:
            raise ValueError(
                f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {self.depth}"
            )
        if self.widen_factor < 1:
            raise ValueError(f"WRN widen_factor must be >= 1, got {self.widen_factor}")

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 4) // 6

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(w * self.widen_factor for w in self.base_widths)

    @property
    def total_stride(self) -> int:
        return 2 ** (len(self.base_widths) - 1)


# Zagoruyko & Komodakis 2016, Tables 4-5 (CIFAR).
VARIANTS: dict[str, WRNVariant] = {
    "wrn16_8": WRNVariant(depth=16, widen_factor=8),
    "wrn28_10": WRNVariant(depth=28, widen_factor=10),
    "wrn40_4": WRNVariant(depth=40, widen_factor=4),
}


class WideBasicBlock(Module):
    """Pre-activation basic block with optional dropout between its two 3x3 convolutions."""

    features: int
    strides: int
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw = self._kw
        pre = bn_relu(x, train, "norm1", **kw)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = conv2d(self.features, 1, self.strides, name="downsample", **kw)(pre)
        y = conv2d(self.features, 3, self.strides, name="conv1", **kw)(pre)
        y = bn_relu(y, train, "norm2", **kw)
        if self.dropout > 0:
            y = nn.Dropout(self.dropout, deterministic=not train)(y)
        y = conv2d(self.features, 3, 1, name="conv2", **kw)(y)
        return y + shortcut


class WideResNet(Classifier):
    """CIFAR Wide ResNet WRN-d-k, NHWC (`variant`: a `WRNVariant` from `VARIANTS`).

    Taps of `features`: `stem`, (N, H, W, 16); `stage{i}`, the output of stage i (before any
    normalisation), (N, H/s, W/s, widths[i-1]) with s = 1, 2, 4; `pre_logits`, (N, 64k) after
    the final BN + ReLU and global pooling; `logits`, (N, num_classes).
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        taps["stem"] = x = conv2d(v.stem_width, 3, 1, name="stem_conv", **kw)(x)
        depths = (v.blocks_per_stage,) * len(v.widths)
        for s, b, width, strides in stage_blocks(depths, v.widths):
            x = WideBasicBlock(width, strides, v.dropout, name=f"stage{s}_block{b}", **kw)(
                x, train=train
            )
            taps[f"stage{s}"] = x
        x = bn_relu(x, train, "final_norm", **kw)
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        taps["logits"] = torch_dense(self.num_classes, x.shape[-1], "head", **kw)(x)
        return taps


_ZK = "Zagoruyko & Komodakis 2016, Wide Residual Networks"
# name -> (paper, notes); reference rows `{name}_cifar` (paper-faithful builds, dropout 0).
_PAPERS = {
    "wrn16_8": (_ZK + ", Table 5 (CIFAR-10)", ""),
    "wrn28_10": (
        _ZK + ", Tables 4-6 (CIFAR-10)",
        "dropout 0 by default; the paper's best CIFAR result uses dropout=0.3",
    ),
    "wrn40_4": (_ZK + ", Table 5 (CIFAR-10)", ""),
}
MODELS = tuple(
    ModelSpec(name, "wrn", WideResNet, v, 32, v.total_stride, *_PAPERS[name], f"{name}_cifar")
    for name, v in VARIANTS.items()
)
