"""MobileNetV3 Large and Small (Howard et al. 2019, "Searching for MobileNetV3", Tables 1 and 2),
torchvision's layout.

A 3x3/2 conv + BN + hard-swish stem; inverted residual blocks (1x1 expand + BN + act, kxk depthwise
+ BN + act, an optional squeeze-excite with a hard-sigmoid gate, linear 1x1 projection + BN, a
residual where the shape is kept), each with its own kernel, expansion width, SE flag and activation
(ReLU or hard-swish); a 1x1 conv to 6x the last block's width + BN + hard-swish; global average
pool; the paper's "1x1 conv, NBN" to 1280 (Large) / 1024 (Small), as a Linear + hard-swish;
dropout 0.2; the linear classifier.

As in torchvision (and the TF reference code), which depart from the paper's tables in two details:
- the SE squeeze width is `make_divisible(expanded // 4, 8)`, not exactly a quarter;
- Small's last 1x1 conv (576) has no SE, although Table 2 marks one.
BatchNorm: epsilon 0.001, momentum 0.01 (torchvision's; PyTorch convention, the new statistic's
weight). A width multiplier rounds every width with `make_divisible(c * width_mult, 8)`, including
the 1280 / 1024 last layer (torchvision; the paper keeps it at 1280 below 1.0).

Parameter tree: `stem/{conv,bn}`, `block{i}/{[expand,]dw,project}/{conv,bn}`,
`block{i}/se/{fc1,fc2}/{kernel,bias}`, `final/{conv,bn}`, `last/{kernel,bias}`, `head`.
"""

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, SqueezeExcite, make_divisible
from jaxcnn.models.base import Classifier, ModelSpec, Module

# Activation codes of the papers' tables: "RE" ReLU, "HS" hard-swish.
_ACTS: dict[str, Callable[[jax.Array], jax.Array]] = {"RE": nn.relu, "HS": jax.nn.hard_swish}


@dataclasses.dataclass(frozen=True)
class Bneck:
    """One row of Table 1 / 2: a "bneck" (inverted residual) block.

    Attributes:
        kernel: depthwise kernel side (3 or 5).
        expanded: "exp size", channels of the expansion and depthwise layers (at width 1.0).
        out: output channels (at width 1.0).
        se: whether the block has squeeze-and-excite.
        act: "RE" (ReLU) or "HS" (hard-swish).
        stride: depthwise stride.
    """

    kernel: int
    expanded: int
    out: int
    se: bool
    act: str
    stride: int


def _table(*rows: tuple[int, int, int, bool, str, int]) -> tuple[Bneck, ...]:
    return tuple(Bneck(*r) for r in rows)


@dataclasses.dataclass(frozen=True)
class MobileNetV3Variant:
    """A MobileNetV3 network as data.

    Attributes:
        blocks: the bneck rows (kernel, exp size, out, SE, activation, stride).
        stem: stem channels (16 in both tables).
        last: width of the last layer before the classifier (Large 1280, Small 1024).
        width_mult: width multiplier; every width becomes `make_divisible(c * width_mult, 8)`.
        dropout: dropout rate before the classifier (train mode only).
        bn_epsilon: BatchNorm epsilon (torchvision / TF: 0.001).
        bn_momentum: BatchNorm momentum, PyTorch convention (torchvision: 0.01).
        num_classes: classifier outputs.
    """

    blocks: tuple[Bneck, ...]
    stem: int = 16
    last: int = 1280
    width_mult: float = 1.0
    dropout: float = 0.2
    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.01
    num_classes: int = 1000

    def ch(self, c: int) -> int:
        """A width of the tables at this variant's width multiplier."""
        return make_divisible(c * self.width_mult, 8)


# Howard et al. 2019, Table 1 (MobileNetV3-Large).
LARGE = _table(
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)
# Howard et al. 2019, Table 2 (MobileNetV3-Small).
SMALL = _table(
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)

VARIANTS = {
    "mobilenet_v3_large": MobileNetV3Variant(LARGE, last=1280),
    "mobilenet_v3_small": MobileNetV3Variant(SMALL, last=1024),
}


class InvertedResidual(Module):
    """A bneck block: [1x1 expand] -> kxk depthwise -> [SE] -> linear 1x1 projection (+ x).

    Attributes:
        row: the table row, with `expanded` and `out` already at the variant's width.
        bn_epsilon: BatchNorm epsilon.
        bn_momentum: BatchNorm momentum (PyTorch convention).
    """

    row: Bneck
    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        r, c = self.row, x.shape[-1]
        kw = {"bn_epsilon": self.bn_epsilon, "bn_momentum": self.bn_momentum, **self._kw}
        act = _ACTS[r.act]
        y = x
        if r.expanded != c:  # the first Large block keeps 16 channels: no expansion conv
            y = ConvBN(r.expanded, 1, act=act, name="expand", **kw)(y, train=train)
        y = ConvBN(r.expanded, r.kernel, r.stride, r.expanded, act=act, name="dw", **kw)(
            y, train=train
        )
        if r.se:
            # torchvision: fc1/fc2 initialised like every conv (He normal, fan_out), zero biases;
            # hard-sigmoid gate, relu6(x + 3) / 6.
            y = SqueezeExcite(
                make_divisible(r.expanded // 4, 8),
                gate=jax.nn.hard_sigmoid,
                bias_init=nn.initializers.zeros,
                name="se",
                **self._kw,
            )(y)
        y = ConvBN(r.out, 1, act=None, name="project", **kw)(y, train=train)
        return x + y if (r.stride == 1 and c == r.out) else y


class MobileNetV3(Classifier):
    """MobileNetV3, NHWC (`variant`: `MobileNetV3Variant`).

    Taps of `features`: `stem`, (N, H/2, W/2, 16); `block{i}` for each bneck row (Large: 15,
    Small: 11), the last at (N, H/32, W/32, 160 / 96); `final`, (N, H/32, W/32, 960 / 576) after
    the last 1x1 conv; `pooled`, (N, 960 / 576); `pre_logits`, (N, 1280 / 1024) after the last
    layer and hard-swish; `logits`. (Widths at width_mult 1.0, Large / Small.)
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        bn = {"bn_epsilon": v.bn_epsilon, "bn_momentum": v.bn_momentum}
        taps = {}
        taps["stem"] = x = ConvBN(
            v.ch(v.stem), 3, 2, act=jax.nn.hard_swish, name="stem", **bn, **kw
        )(x, train=train)
        for i, row in enumerate(v.blocks, start=1):
            row = dataclasses.replace(row, expanded=v.ch(row.expanded), out=v.ch(row.out))
            taps[f"block{i}"] = x = InvertedResidual(row, name=f"block{i}", **bn, **kw)(
                x, train=train
            )
        final = 6 * x.shape[-1]
        taps["final"] = x = ConvBN(final, 1, act=jax.nn.hard_swish, name="final", **bn, **kw)(
            x, train=train
        )
        taps["pooled"] = x = jnp.mean(x, axis=(1, 2))
        # torchvision: both Linear layers normal(0, 0.01) weights, zero bias.
        dense = {"kernel_init": nn.initializers.normal(0.01), **kw}
        x = nn.Dense(v.ch(v.last), name="last", **dense)(x)
        taps["pre_logits"] = x = jax.nn.hard_swish(x)
        x = nn.Dropout(v.dropout, deterministic=not train)(x)
        taps["logits"] = nn.Dense(self.num_classes, name="head", **dense)(x)
        return taps


_PAPER = "Howard et al. 2019, Searching for MobileNetV3, Tables 1 and 2"
_NOTES = (
    "torchvision layout: SE squeeze make_divisible(exp // 4, 8), hard-sigmoid gate; BN eps 0.001, "
    "momentum 0.01; width_mult via create_model(..., width_mult=a) rounds every width to a "
    "multiple of 8"
)
_SMALL_NOTE = "; no SE on the last 1x1 conv (Table 2 marks one; torchvision and TF omit it)"
MODELS = tuple(
    ModelSpec(
        name,
        "mobilenet_v3",
        MobileNetV3,
        v,
        224,
        32,
        _PAPER,
        _NOTES + (_SMALL_NOTE if name == "mobilenet_v3_small" else ""),
        name,
    )
    for name, v in VARIANTS.items()
)
