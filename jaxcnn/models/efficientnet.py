"""EfficientNet B0-B7 and compound scaling.

Paper: Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks".
Table 1: the B0 baseline, a 3x3/2 stem conv, seven stages of MBConv blocks (Sandler et al. 2018's
inverted residual with a squeeze-and-excitation unit, Hu et al. 2018, and SiLU/"swish"), a 1x1 conv to
1280 channels, global average pooling, dropout, a linear head. B1-B7 scale B0's widths and depths by
the released (width, depth, resolution, dropout) table (`SCALING`), which the TF reference code, timm
and torchvision share; `efficientnet_compound` applies the paper's Eq. 3 formula instead (see its
docstring for how the two differ).

torchvision's layout and conventions (`torchvision.models.efficientnet_b0..b7`), which the converter
relies on:
- channels `make_divisible(c * width, 8)`, stage depths `ceil(n * depth)`;
- the SE unit squeezes to `max(1, block_input_channels // 4)` (not a quarter of the expanded width)
  with SiLU, and excites with a sigmoid; its two 1x1 convolutions have biases;
- stochastic depth on every residual block, per sample ("row" mode), with drop rate
  `0.2 * i / n_blocks` for the i-th block (0-based): the survival probability falls linearly from 1
  to `1 - 0.2 * (n - 1) / n` (just above 0.8); blocks without a residual have none;
- BatchNorm: PyTorch's eps 1e-5 / momentum 0.1 for B0-B4 (weights trained in PyTorch), the TF
  port's eps 1e-3 / momentum 0.01 for B5-B7 (`bn_epsilon`, `bn_momentum` fields);
- symmetric `k // 2` padding; the TF original pads "SAME" (asymmetric at stride 2), which timm's
  `tf_efficientnet_*` reproduces and this module does not.

Parameter tree (a public contract): `stem/{conv,bn}`,
`stage{s}_block{b}/{[expand,]dw,project}/{conv,bn}` and `stage{s}_block{b}/se/{fc1,fc2}`,
`final/{conv,bn}`, `head`.
"""

import dataclasses
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, DropPath, SqueezeExcite, make_divisible, uniform_init
from jaxcnn.models.base import Classifier, ModelSpec, Module

# Tan & Le 2019, Table 1 (B0): (expansion, kernel, first stride, input channels, output channels,
# layers) of each stage; as torchvision's `_efficientnet_conf`.
B0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)

# The released scaling table (TF reference code `efficientnet_builder.efficientnet_params`,
# torchvision `efficientnet_b0..b7`): (width, depth, resolution, dropout).
SCALING: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}
# torchvision's B5-B7 weights are ports of the TF checkpoints and keep TF's BatchNorm settings.
_TF_BN_MODELS = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")


class MBConvSpec(NamedTuple):
    """One MBConv block, as `EfficientNetVariant.blocks()` lists it (channels already scaled)."""

    stage: int  # 1-based
    index: int  # 1-based, within the stage
    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    drop_rate: float  # stochastic depth: probability of dropping the residual branch

    @property
    def expanded(self) -> int:
        """Channels of the depthwise conv; no expand conv when equal to `in_channels`."""
        return make_divisible(self.in_channels * self.expand_ratio, 8)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclasses.dataclass(frozen=True)
class EfficientNetVariant:
    """One EfficientNet, as data.

    Attributes:
        width_mult: channel multiplier of every stage, the stem and the final conv.
        depth_mult: layer multiplier of every stage (`ceil(layers * depth_mult)`).
        dropout: dropout rate before the head.
        stochastic_depth_prob: drop rate of the last residual block; block i of n gets
            `stochastic_depth_prob * i / n`.
        bn_epsilon: BatchNorm epsilon (PyTorch 1e-5; TF and torchvision B5-B7 1e-3).
        bn_momentum: BatchNorm momentum in PyTorch's convention, the weight of the new batch
            statistic (PyTorch 0.1; TF and torchvision B5-B7 0.01).
        stages: B0's stage table (see `B0_STAGES`), scaled by `width_mult` / `depth_mult`.
        num_classes: classes of the native head.
    """

    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout: float = 0.2
    stochastic_depth_prob: float = 0.2
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.1
    stages: tuple[tuple[int, int, int, int, int, int], ...] = B0_STAGES
    num_classes: int = 1000

    def channels(self, c: int) -> int:
        """`c` scaled by the width multiplier and rounded to a multiple of 8 (torchvision's rule)."""
        return make_divisible(c * self.width_mult, 8)

    def blocks(self) -> list[MBConvSpec]:
        """Every MBConv block in order, with scaled channels and its stochastic-depth rate."""
        depths = [int(math.ceil(n * self.depth_mult)) for *_, n in self.stages]
        total, specs = sum(depths), []
        for s, (row, n) in enumerate(zip(self.stages, depths, strict=True), start=1):
            t, k, stride, c_in, c_out, _ = row
            for b in range(n):
                c = self.channels(c_in) if b == 0 else self.channels(c_out)
                rate = self.stochastic_depth_prob * len(specs) / total
                specs.append(
                    MBConvSpec(
                        s, b + 1, t, k, stride if b == 0 else 1, c, self.channels(c_out), rate
                    )
                )
        return specs


class MBConv(Module):
    """[1x1 expand + BN + SiLU] -> kxk depthwise + BN + SiLU -> SE -> 1x1 project + BN, plus a
    residual (with stochastic depth on the branch) where the shape is unchanged."""

    spec: MBConvSpec
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Args: x: (N, H, W, spec.in_channels). Returns: (N, H / stride, W / stride, out_channels)."""
        sp = self.spec
        kw = {"bn_epsilon": self.bn_epsilon, "bn_momentum": self.bn_momentum, **self._kw}
        y = x
        if sp.expanded != sp.in_channels:
            y = ConvBN(sp.expanded, 1, act=nn.silu, name="expand", **kw)(y, train=train)
        y = ConvBN(
            sp.expanded, sp.kernel, sp.stride, groups=sp.expanded, act=nn.silu, name="dw", **kw
        )(y, train=train)
        # torchvision's SqueezeExcitation: a quarter of the block's *input* channels, SiLU, a
        # sigmoid gate; fc1/fc2 initialised like every conv, zero biases.
        y = SqueezeExcite(
            max(1, sp.in_channels // 4),
            act=nn.silu,
            bias_init=nn.initializers.zeros,
            name="se",
            **self._kw,
        )(y)
        y = ConvBN(sp.out_channels, 1, act=None, name="project", **kw)(y, train=train)
        if not sp.residual:
            return y
        return x + DropPath(sp.drop_rate)(y, deterministic=not train)


class EfficientNet(Classifier):
    """EfficientNet, NHWC (`variant`: `EfficientNetVariant`).

    Taps of `features`: `stem`, (N, H/2, W/2, 32 * width); `stage1`..`stage7`, the output of each
    stage of MBConv blocks (total strides 2, 4, 8, 16, 16, 32, 32; B0 channels 16, 24, 40, 80, 112,
    192, 320); `final`, (N, H/32, W/32, 1280 * width) after the 1x1 conv; `pre_logits`, its global
    average, (N, 1280 * width); `logits`. (Channel counts are rounded to multiples of 8.)
    Train mode: batch statistics, stochastic depth on the residual blocks and dropout before the
    head, both from the 'dropout' rng stream.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v = self.variant
        kw = {"bn_epsilon": v.bn_epsilon, "bn_momentum": v.bn_momentum, **self._kw}
        taps = {}
        blocks = v.blocks()
        taps["stem"] = x = ConvBN(blocks[0].in_channels, 3, 2, act=nn.silu, name="stem", **kw)(
            x, train=train
        )
        for sp in blocks:
            x = MBConv(sp, name=f"stage{sp.stage}_block{sp.index}", **kw)(x, train=train)
            taps[f"stage{sp.stage}"] = x
        # torchvision: 4 x the last stage's scaled channels (1280 at width 1), which can differ from
        # a rounded 1280 * width.
        final = 4 * blocks[-1].out_channels
        taps["final"] = x = ConvBN(final, 1, act=nn.silu, name="final", **kw)(x, train=train)
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(v.dropout, deterministic=not train)(x)
        # torchvision: U(-1/sqrt(num_classes), 1/sqrt(num_classes)) weights, zero bias.
        taps["logits"] = nn.Dense(
            self.num_classes,
            kernel_init=uniform_init(1.0 / math.sqrt(self.num_classes)),
            name="head",
            **self._kw,
        )(x)
        return taps


def _variant(name: str) -> EfficientNetVariant:
    width, depth, _, dropout = SCALING[name]
    bn = {"bn_epsilon": 1e-3, "bn_momentum": 0.01} if name in _TF_BN_MODELS else {}
    return EfficientNetVariant(width_mult=width, depth_mult=depth, dropout=dropout, **bn)


VARIANTS: dict[str, EfficientNetVariant] = {name: _variant(name) for name in SCALING}


def compound_coefficients(
    phi: float,
    alpha: float = 1.2,
    beta: float = 1.1,
    gamma: float = 1.15,
    base_resolution: int = 224,
) -> tuple[float, float, int]:
    """Tan & Le 2019, Eq. 3: depth alpha**phi, width beta**phi, resolution gamma**phi.

    Args:
        phi: the compound coefficient (may be negative or fractional).
        alpha, beta, gamma: the paper's grid-searched constants (alpha * beta**2 * gamma**2 ~ 2, so
            FLOPs grow by ~2**phi).
        base_resolution: B0's input side.

    Returns:
        (depth multiplier, width multiplier, resolution), the resolution being
        `base_resolution * gamma**phi` rounded to the nearest integer (258 for phi = 1).
    """
    return alpha**phi, beta**phi, int(round(base_resolution * gamma**phi))


def efficientnet_compound(
    phi: float,
    alpha: float = 1.2,
    beta: float = 1.1,
    gamma: float = 1.15,
    *,
    num_classes: int = 1000,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    **variant_overrides: Any,
) -> tuple[EfficientNet, int]:
    """An EfficientNet scaled from B0 by the paper's compound-scaling formula (Eq. 3).

    Depth multiplier `alpha**phi`, width multiplier `beta**phi`, resolution `224 * gamma**phi`
    rounded to the nearest integer; everything else is B0's (dropout 0.2, stochastic depth 0.2,
    PyTorch BatchNorm settings) unless overridden. phi = 0 is exactly `efficientnet_b0`; negative phi
    gives smaller networks (widths stay at least 8 channels, stages at least one block).

    The released B1-B7 (`SCALING`) do not follow this formula: every released depth and width is
    below the formula's, resolutions are below it for B1-B4 and slightly above for B5-B7. For
    phi = 1..7 the formula gives depth 1.20, 1.44, 1.73, 2.07, 2.49, 2.99, 3.58, width 1.10,
    1.21, 1.33, 1.46, 1.61, 1.77, 1.95 and resolution 258, 296, 341, 392, 451, 518, 596, where the
    released table has depth 1.1, 1.2, 1.4, 1.8, 2.2, 2.6, 3.1, width 1.0, 1.1, 1.2, 1.4, 1.6, 1.8,
    2.0 and resolution 240, 260, 300, 380, 456, 528, 600 (and dropout rising 0.2 -> 0.5). Use
    `efficientnet_b1..b7` to reproduce the published models.

    Args:
        phi: compound coefficient.
        alpha, beta, gamma: depth, width and resolution bases.
        num_classes: classifier outputs.
        dtype: computation dtype.
        param_dtype: parameter dtype.
        **variant_overrides: other `EfficientNetVariant` fields (e.g. `dropout=0.3`).

    Returns:
        (unbound module, input resolution).
    """
    depth, width, resolution = compound_coefficients(phi, alpha, beta, gamma)
    variant = dataclasses.replace(
        VARIANTS["efficientnet_b0"],
        width_mult=width,
        depth_mult=depth,
        num_classes=num_classes,
        **variant_overrides,
    )
    model = EfficientNet(
        variant=variant, num_classes=num_classes, dtype=dtype, param_dtype=param_dtype
    )
    return model, resolution


_PAPER = "Tan & Le 2019, EfficientNet, Table 1 (B0) and the released scaling table (Table 2 models)"
_COMMON_NOTES = (
    "torchvision layout (symmetric padding, not TF 'SAME'; SE squeeze = block input / 4); "
    "released (width, depth, resolution, dropout) table, not the alpha/beta/gamma formula "
    "(see efficientnet_compound)"
)


def _notes(name: str) -> str:
    if name in _TF_BN_MODELS:
        return _COMMON_NOTES + "; BN eps 1e-3, momentum 0.01 as the TF original"
    notes = _COMMON_NOTES + (
        "; BN eps 1e-5, momentum 0.1 (PyTorch defaults; the TF original: bn_epsilon=1e-3, "
        "bn_momentum=0.01)"
    )
    if name == "efficientnet_b2":
        notes += "; torchvision evaluates its B2 weights at 288 (1.088 GMACs), the paper at 260"
    return notes


# Figures: torchvision's builds at the paper resolution, reference rows efficientnet_b0..b7.
MODELS = tuple(
    ModelSpec(
        name, "efficientnet", EfficientNet, v, SCALING[name][2], 32, _PAPER, _notes(name), name
    )
    for name, v in VARIANTS.items()
)
