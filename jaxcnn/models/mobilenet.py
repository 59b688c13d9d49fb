"""MobileNet v1 and v2.

Papers:
- Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications", Table 1: a 3x3/2 conv, then 13 depthwise-separable blocks (3x3 depthwise + BN + ReLU,
  1x1 pointwise + BN + ReLU), global average pool, linear head. Width multiplier `alpha`
  (Table 6: 1.0, 0.75, 0.5, 0.25), registered as `mobilenet_v1`, `mobilenet_v1_075`, `_050`, `_025`.
- Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks", Table 2: inverted
  residual blocks (1x1 expand by t + ReLU6, 3x3 depthwise + ReLU6, linear 1x1 projection; a residual
  when the shape is kept), a 1x1 conv to 1280, dropout 0.2, linear head. torchvision's layout.

Channel counts are `make_divisible(c * width_mult, 8)`, as in the TF reference code, torchvision and
timm; at the paper's four widths every v1 width is already a multiple of 8, so this equals the
paper's `int(c * alpha)` (pytorchcv's rule).
Parameter trees: v1 `stem/{conv,bn}`, `block{i}/{dw,pw}/{conv,bn}`, `head`; v2 `stem/{conv,bn}`,
`block{i}/{[expand,]dw,project}/{conv,bn}`, `final/{conv,bn}`, `head`.
"""

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, make_divisible, torch_dense
from jaxcnn.models.base import Classifier, ModelSpec, Module


@dataclasses.dataclass(frozen=True)
class MobileNetV1Variant:
    """Howard et al. 2017, Table 1: (output channels, stride) of each depthwise-separable block."""

    blocks: tuple[tuple[int, int], ...] = (
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    )
    stem: int = 32
    width_mult: float = 1.0
    # The paper uses ReLU; TF-slim's reference code and timm's `mobilenetv1_100` use ReLU6.
    relu6: bool = False
    num_classes: int = 1000


@dataclasses.dataclass(frozen=True)
class MobileNetV2Variant:
    """Sandler et al. 2018, Table 2: (expansion t, channels c, repeats n, first stride s) per row."""

    settings: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )
    stem: int = 32
    last: int = 1280
    width_mult: float = 1.0
    dropout: float = 0.2
    num_classes: int = 1000

    def blocks(self) -> list[tuple[int, int, int]]:
        """(expansion, output channels, stride) of every inverted residual block, in order."""
        return [
            (t, make_divisible(c * self.width_mult), s if i == 0 else 1)
            for t, c, n, s in self.settings
            for i in range(n)
        ]


class MobileNetV1(Classifier):
    """MobileNet v1, NHWC (`variant`: `MobileNetV1Variant`).

    Taps of `features`: `stem`, (N, H/2, W/2, 32); `block{i}` for i = 1..13; `pre_logits`,
    (N, 1024 * width_mult) after global pooling; `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        act = jax.nn.relu6 if v.relu6 else nn.relu
        stem = make_divisible(v.stem * v.width_mult)
        taps["stem"] = x = ConvBN(stem, 3, 2, act=act, name="stem", **kw)(x, train=train)
        for i, (c, s) in enumerate(v.blocks, start=1):
            taps[f"block{i}"] = x = DepthwiseSeparable(
                make_divisible(c * v.width_mult), s, act, name=f"block{i}", **kw
            )(x, train=train)
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        taps["logits"] = torch_dense(self.num_classes, x.shape[-1], "head", **kw)(x)
        return taps


class DepthwiseSeparable(Module):
    """3x3 depthwise conv + BN + act, then 1x1 pointwise conv + BN + act (act: ReLU or ReLU6)."""

    features: int
    strides: int
    act: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw, c = self._kw, x.shape[-1]
        x = ConvBN(c, 3, self.strides, groups=c, act=self.act, name="dw", **kw)(x, train=train)
        return ConvBN(self.features, 1, 1, act=self.act, name="pw", **kw)(x, train=train)


class InvertedResidual(Module):
    """[1x1 expand + BN + ReLU6] -> 3x3 depthwise + BN + ReLU6 -> 1x1 project + BN (linear)."""

    expansion: int
    features: int
    strides: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw, c = self._kw, x.shape[-1]
        hidden = int(round(c * self.expansion))
        y = x
        if self.expansion != 1:
            y = ConvBN(hidden, 1, 1, act=jax.nn.relu6, name="expand", **kw)(y, train=train)
        y = ConvBN(hidden, 3, self.strides, groups=hidden, act=jax.nn.relu6, name="dw", **kw)(
            y, train=train
        )
        y = ConvBN(self.features, 1, 1, act=None, name="project", **kw)(y, train=train)
        # The linear bottleneck keeps a residual only where the shape is unchanged.
        return x + y if (self.strides == 1 and c == self.features) else y


class MobileNetV2(Classifier):
    """MobileNetV2, NHWC (`variant`: `MobileNetV2Variant`).

    Taps of `features`: `stem`, (N, H/2, W/2, 32); `block{i}` for each of the 17 inverted residual
    blocks; `final`, (N, H/32, W/32, 1280); `pre_logits`, (N, 1280) after global pooling; `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        stem = make_divisible(v.stem * v.width_mult)
        taps["stem"] = x = ConvBN(stem, 3, 2, act=jax.nn.relu6, name="stem", **kw)(x, train=train)
        for i, (t, c, s) in enumerate(v.blocks(), start=1):
            taps[f"block{i}"] = x = InvertedResidual(t, c, s, name=f"block{i}", **kw)(
                x, train=train
            )
        last = make_divisible(v.last * max(1.0, v.width_mult))
        taps["final"] = x = ConvBN(last, 1, 1, act=jax.nn.relu6, name="final", **kw)(x, train=train)
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(v.dropout, deterministic=not train)(x)
        # torchvision: normal(0, 0.01) weights, zero bias.
        taps["logits"] = nn.Dense(
            self.num_classes, kernel_init=nn.initializers.normal(0.01), name="head", **kw
        )(x)
        return taps


VARIANTS = {
    "mobilenet_v1": MobileNetV1Variant(),
    # Table 6 / 8: the width multiplier alpha at 224 px (timm 1.0.31 registers no such widths).
    "mobilenet_v1_075": MobileNetV1Variant(width_mult=0.75),
    "mobilenet_v1_050": MobileNetV1Variant(width_mult=0.5),
    "mobilenet_v1_025": MobileNetV1Variant(width_mult=0.25),
    "mobilenet_v2": MobileNetV2Variant(),
}
_V1_PAPER = "Howard et al. 2017, MobileNets, Tables 1, 6 and 8"
_V1_NOTES = (
    "timm mobilenetv1_100 layout (ReLU as in the paper; relu6=True for timm's default ReLU6); "
    "other widths via create_model(..., width_mult=a), channels rounded to multiples of 8"
)
_V2 = (
    "Sandler et al. 2018, MobileNetV2, Table 2",
    "torchvision layout; width_mult via create_model(..., width_mult=a)",
)
# The 0.75 / 0.5 / 0.25 widths have no row in the reference table; their figures (pytorchcv
# mobilenet_w3d4 / wd2 / wd4 counted) are in reference/supplement.json.
MODELS = tuple(
    ModelSpec(
        name,
        "mobilenet",
        MobileNetV1 if isinstance(v, MobileNetV1Variant) else MobileNetV2,
        v,
        224,
        32,
        *((_V1_PAPER, _V1_NOTES) if isinstance(v, MobileNetV1Variant) else _V2),
        reference_key=name if name in ("mobilenet_v1", "mobilenet_v2") else None,
    )
    for name, v in VARIANTS.items()
)
