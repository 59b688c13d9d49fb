"""Inception-v4 and Inception-ResNet-v2, in the TF-slim layout that timm ports.

Paper: Szegedy, Ioffe, Vanhoucke & Alemi 2016, "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning" (arXiv 1602.07261). Inception-v4 is Fig. 9: the stem of Fig. 3,
4 x Inception-A (Fig. 4), Reduction-A (Fig. 7), 7 x Inception-B (Fig. 5), Reduction-B (Fig. 8),
3 x Inception-C (Fig. 6), average pooling, dropout (keep 0.8), a linear classifier.
Inception-ResNet-v2 (Fig. 15) has 10 x Inception-ResNet-A (Fig. 16), Reduction-A (Fig. 7 with
Table 1's k, l, m, n = 256, 256, 384, 384), 20 x Inception-ResNet-B (Fig. 17), Reduction-B (Fig. 18)
and Inception-ResNet-C blocks (Fig. 19). Each residual block adds `scale * branch` to its input,
with the branch's 1x1 "linear" projection (with a bias, no BN) back to the input width. Sec. 3.3:
scaling the residuals by 0.1 to 0.3 keeps the very wide networks from dying early in training; the
released model (TF-slim, timm) uses 0.17 (A), 0.10 (B) and 0.20 (C).

How the released Inception-ResNet-v2 (TF-slim, ported by timm, whose weights this layout loads)
departs from the paper's figures: its stem is an Inception-v3-like one (3x3 convs, max pool, 1x1 80,
3x3 192, max pool) followed by an Inception-v3 Mixed_5b module (a 5x5 branch), 320 channels, instead
of the Inception-v4 stem of Fig. 3; the residual stages therefore run at 320 / 1088 / 2080 channels
instead of the figures' projection widths; 9 scaled Inception-ResNet-C blocks are followed by a tenth
with scale 1 and no ReLU, then a 1x1 conv to 1536 channels (`final_conv`) before pooling.
Both networks: BatchNorm (epsilon 1e-3, TF's default) after every convolution but the residual
projections.

Every channel count is data (the variant's per-block width tables, scaled by `width_mult`);
`depths` sets the number of A / B / C blocks, so small trainable versions need no code change.

Unpadded ("V" in the figures) convolutions and three stride-2 reductions after the stride-4 stem make
75 x 75 the smallest input (2 x 2 left before the last 3 x 3 valid reduction at 74 px).

Parameter tree: stem convs `stem_conv{i}/{conv,bn}`; concatenation blocks (`mixed_3a`, `mixed_4a`,
`mixed_5a`, `mixed_5b`, `inception_a{i}`, `reduction_a`, `inception_b{i}`, `reduction_b`,
`inception_c{i}`, `inception_resnet_{a,b,c}{i}`) of branches `branch{b}` (one conv, or, after an
average pool, the one conv) or `branch{b}_{j}` (the j-th conv of a chain), each `{conv,bn}`;
residual blocks add `project/{kernel,bias}`; IRv2 `final_conv/{conv,bn}`; `head`.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, conv2d, torch_dense
from jaxcnn.models.base import Classifier, ModelSpec, Module

# Smallest input side (see the module docstring).
MIN_IMAGE_SIZE = 75

# Convolution specs: (kernel height, kernel width, stride, padded). Padded convolutions keep the size
# at stride 1 (PyTorch's k // 2 on each side, the figures' unmarked layers); unpadded ones are the
# figures' "V" (valid) layers.
Spec = tuple[int, int, int, bool]
_1x1: Spec = (1, 1, 1, True)
_3x3: Spec = (3, 3, 1, True)
_5x5: Spec = (5, 5, 1, True)
_1x3, _3x1, _1x7, _7x1 = (1, 3, 1, True), (3, 1, 1, True), (1, 7, 1, True), (7, 1, 1, True)
_3x3_V: Spec = (3, 3, 1, False)
_3x3_S2V: Spec = (3, 3, 2, False)

Widths = Any  # an int, or a tuple of (nested tuples of) ints: one per convolution of a block


def _scale(widths: Widths, mult: float) -> Widths:
    """Multiplies every width of a (nested) width table by `mult`, keeping at least 1 channel."""
    if isinstance(widths, int):
        return max(1, round(widths * mult))
    return tuple(_scale(w, mult) for w in widths)


class _Widths:
    """`widths(block)`: a block's width table scaled by the variant's `width_mult`."""

    width_mult: float

    def widths(self, block: str) -> Widths:
        return _scale(getattr(self, block), self.width_mult)


@dataclasses.dataclass(frozen=True)
class InceptionV4Variant(_Widths):
    """Inception-v4 (Szegedy et al. 2016, Fig. 9), as data: block counts and branch widths.

    Width tables list, branch by branch, the output channels of each convolution in order (a
    nested tuple for a chain of convolutions); pooling branches have none.

    Attributes:
        depths: Inception-A, -B, -C blocks (Fig. 9: 4, 7, 3).
        stem: 3x3/2 V, 3x3 V, 3x3 convolutions (Fig. 3).
        mixed_3a: the 3x3/2 V conv beside a 3x3/2 max pool (Fig. 3).
        mixed_4a: 1x1 -> 3x3 V | 1x1 -> 1x7 -> 7x1 -> 3x3 V (Fig. 3).
        mixed_5a: the 3x3/2 V conv beside a max pool (Fig. 3).
        inception_a: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1 (Fig. 4).
        reduction_a: 3x3/2 V (n) | 1x1 (k) -> 3x3 (l) -> 3x3/2 V (m) | max pool (Fig. 7; Table 1:
            k, l, m, n = 192, 224, 256, 384).
        inception_b: 1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg pool -> 1x1
            (Fig. 5).
        reduction_b: 1x1 -> 3x3/2 V | 1x1 -> 1x7 -> 7x1 -> 3x3/2 V | max pool (Fig. 8).
        inception_c: 1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x1 -> 1x3 -> (1x3, 3x1) | avg pool -> 1x1
            (Fig. 6; each split's two convolutions have the width of the table's last entry).
        width_mult: multiplies every width (1.0: the paper's network).
        dropout: dropout rate before the classifier (the paper: keep probability 0.8).
        bn_epsilon: BatchNorm epsilon (TF's 1e-3, as the released weights).
        num_classes: classes of the native head.
    """

    depths: tuple[int, int, int] = (4, 7, 3)
    stem: Widths = (32, 32, 64)
    mixed_3a: Widths = 96
    mixed_4a: Widths = ((64, 96), (64, 64, 64, 96))
    mixed_5a: Widths = 192
    inception_a: Widths = (96, (64, 96), (64, 96, 96), 96)
    reduction_a: Widths = (384, (192, 224, 256))
    inception_b: Widths = (384, (192, 224, 256), (192, 192, 224, 224, 256), 128)
    reduction_b: Widths = ((192, 192), (256, 256, 320, 320))
    inception_c: Widths = (256, (384, 256), (384, 448, 512, 256), 256)
    width_mult: float = 1.0
    dropout: float = 0.2
    bn_epsilon: float = 1e-3
    num_classes: int = 1000


@dataclasses.dataclass(frozen=True)
class InceptionResNetV2Variant(_Widths):
    """Inception-ResNet-v2 (Szegedy et al. 2016, Fig. 15), TF-slim's released layout, as data.

    Attributes:
        depths: Inception-ResNet-A, -B, -C blocks (10, 20, 10); the last C block is TF-slim's
            extra linear one (scale 1, no ReLU).
        scales: residual scaling of the A, B, C blocks (TF-slim: 0.17, 0.10, 0.20; Sec. 3.3 of the
            paper: "between 0.1 and 0.3").
        stem: 3x3/2 V, 3x3 V, 3x3, [max pool], 1x1, 3x3 V, [max pool] convolutions (TF-slim).
        mixed_5b: Inception-v3's 35x35 module: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 |
            avg pool -> 1x1.
        inception_resnet_a: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3, then the projection (Fig. 16).
        reduction_a: as Inception-v4's, with Table 1's k, l, m, n = 256, 256, 384, 384 (Fig. 7).
        inception_resnet_b: 1x1 | 1x1 -> 1x7 -> 7x1, then the projection (Fig. 17).
        reduction_b: 1x1 -> 3x3/2 V | 1x1 -> 3x3/2 V | 1x1 -> 3x3 -> 3x3/2 V | max pool (Fig. 18).
        inception_resnet_c: 1x1 | 1x1 -> 1x3 -> 3x1, then the projection (Fig. 19).
        final: the 1x1 conv before pooling (TF-slim's Conv2d_7b).
        width_mult: multiplies every width (1.0: the released network).
        dropout: dropout rate before the classifier (TF-slim: keep probability 0.8).
        bn_epsilon: BatchNorm epsilon (TF's 1e-3).
        num_classes: classes of the native head.
    """

    depths: tuple[int, int, int] = (10, 20, 10)
    scales: tuple[float, float, float] = (0.17, 0.10, 0.20)
    stem: Widths = (32, 32, 64, 80, 192)
    mixed_5b: Widths = (96, (48, 64), (64, 96, 96), 64)
    inception_resnet_a: Widths = (32, (32, 32), (32, 48, 64))
    reduction_a: Widths = (384, (256, 256, 384))
    inception_resnet_b: Widths = (192, (128, 160, 192))
    reduction_b: Widths = ((256, 384), (256, 288), (256, 288, 320))
    inception_resnet_c: Widths = (192, (192, 224, 256))
    final: Widths = 1536
    width_mult: float = 1.0
    dropout: float = 0.2
    bn_epsilon: float = 1e-3
    num_classes: int = 1000


VARIANTS = {
    "inception_v4": InceptionV4Variant(),
    "inception_resnet_v2": InceptionResNetV2Variant(),
}


def conv_bn_relu(features: int, spec: Spec, bn_epsilon: float, name: str, **kw: Any) -> ConvBN:
    """Bias-free convolution -> BatchNorm -> ReLU (timm's `ConvNormAct`, TF-slim's `conv2d`);
    `spec`: (kernel height, kernel width, stride, padded). `kw`: dtypes."""
    kh, kw_, stride, padded = spec
    padding = "torch" if padded else "valid"
    return ConvBN(
        features, (kh, kw_), stride, padding=padding, bn_epsilon=bn_epsilon, name=name, **kw
    )


def _max_pool(x: jax.Array) -> jax.Array:  # the reductions' 3x3/2 V max pool
    return nn.max_pool(x, (3, 3), strides=(2, 2))


def _avg_pool(x: jax.Array) -> jax.Array:
    """The 3x3/1 average pool of the pooling branches; like TF's and timm's, it averages only the
    pixels inside the image (`count_include_pad=False`)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


class _Block(Module):
    """A block of parallel branches; `widths` is its width table (see the variants)."""

    widths: Widths
    bn_epsilon: float = 1e-3

    def conv(self, x: jax.Array, features: int, spec: Spec, name: str, train: bool) -> jax.Array:
        return conv_bn_relu(features, spec, self.bn_epsilon, name, **self._kw)(x, train=train)


# A branch of a `Mixed` block: a chain of convolutions (their specs), or "max" (the 3x3/2 V max
# pool, no parameters) or "avg" (the 3x3/1 average pool, then a 1x1 conv).
Branch = tuple[Spec, ...] | str

# Figs. 3-8 and 16-19 (TF-slim's release for Inception-ResNet-v2) as branch tables.
MIXED_4A: tuple[Branch, ...] = ((_1x1, _3x3_V), (_1x1, _1x7, _7x1, _3x3_V))
INCEPTION_A: tuple[Branch, ...] = ((_1x1,), (_1x1, _3x3), (_1x1, _3x3, _3x3), "avg")
MIXED_5B: tuple[Branch, ...] = ((_1x1,), (_1x1, _5x5), (_1x1, _3x3, _3x3), "avg")
REDUCTION_A: tuple[Branch, ...] = ((_3x3_S2V,), (_1x1, _3x3, _3x3_S2V), "max")
INCEPTION_B: tuple[Branch, ...] = (
    (_1x1,),
    (_1x1, _1x7, _7x1),
    (_1x1, _7x1, _1x7, _7x1, _1x7),
    "avg",
)
REDUCTION_B: tuple[Branch, ...] = ((_1x1, _3x3_S2V), (_1x1, _1x7, _7x1, _3x3_S2V), "max")
INCEPTION_RESNET_A: tuple[Branch, ...] = ((_1x1,), (_1x1, _3x3), (_1x1, _3x3, _3x3))
INCEPTION_RESNET_B: tuple[Branch, ...] = ((_1x1,), (_1x1, _1x7, _7x1))
INCEPTION_RESNET_C: tuple[Branch, ...] = ((_1x1,), (_1x1, _1x3, _3x1))
INCEPTION_RESNET_REDUCTION_B: tuple[Branch, ...] = (
    (_1x1, _3x3_S2V),
    (_1x1, _3x3_S2V),
    (_1x1, _3x3, _3x3_S2V),
    "max",
)


class Mixed(_Block):
    """Parallel branches (`branches`, with one width table entry per branch but "max"),
    concatenated; with `residual`, an Inception-ResNet block: `act(x + scale * project(concat))`.

    Branch b is named `branch{b}` where its width is one number (one conv, or the conv after the
    average pool) and `branch{b}_{j}` for the j-th conv of a chain (timm's nn.Sequential indices).
    `project` is the figures' "1x1 Conv (Linear)": a convolution with a bias, no BN, back to the
    input's width, so any width table fits any input.

    Attributes:
        branches: the branch table (e.g. `INCEPTION_A`).
        residual: add the projected branches to the input (Inception-ResNet).
        scale: residual scaling (Sec. 3.3).
        activate: ReLU after the residual addition (TF-slim's last block8 has none).
    """

    branches: tuple[Branch, ...] = ()
    residual: bool = False
    scale: float = 1.0
    activate: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        widths, outs = iter(self.widths), []
        for b, branch in enumerate(self.branches):
            if branch == "max":
                outs.append(_max_pool(x))
                continue
            w = next(widths)
            if branch == "avg":
                outs.append(self.conv(_avg_pool(x), w, _1x1, f"branch{b}", train))
            elif isinstance(w, int):
                outs.append(self.conv(x, w, branch[0], f"branch{b}", train))
            else:  # a chain
                y = x
                for j, (features, spec) in enumerate(zip(w, branch, strict=True)):
                    y = self.conv(y, features, spec, f"branch{b}_{j}", train)
                outs.append(y)
        if not self.residual:
            return jnp.concatenate(outs, axis=-1)
        y = conv2d(x.shape[-1], 1, use_bias=True, name="project", **self._kw)(
            jnp.concatenate(outs, axis=-1)
        )
        y = x + self.scale * y
        return nn.relu(y) if self.activate else y


class ConvBesidePool(_Block):
    """A 3x3/2 V convolution beside a 3x3/2 V max pool, concatenated (Fig. 3: Mixed_3a, Mixed_5a).

    `pool_first` gives the concatenation order of the released weights (pool first in Mixed_3a).
    """

    pool_first: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        y = self.conv(x, self.widths, _3x3_S2V, "conv", train)
        parts = (_max_pool(x), y) if self.pool_first else (y, _max_pool(x))
        return jnp.concatenate(parts, axis=-1)


class InceptionC(_Block):
    """Inception-C (Fig. 6) at the 8x8 grid: two branches end in a parallel 1x3 / 3x1 pair;
    timm's names (`branch1_0`, `branch1_1a`, `branch1_1b`, `branch2_0` .. `branch2_3b`)."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        w0, (w10, w11), (w20, w21, w22, w23), w3 = self.widths
        b0 = self.conv(x, w0, _1x1, "branch0", train)
        y = self.conv(x, w10, _1x1, "branch1_0", train)
        b1a = self.conv(y, w11, _1x3, "branch1_1a", train)
        b1b = self.conv(y, w11, _3x1, "branch1_1b", train)
        y = self.conv(x, w20, _1x1, "branch2_0", train)
        y = self.conv(y, w21, _3x1, "branch2_1", train)
        y = self.conv(y, w22, _1x3, "branch2_2", train)
        b2a = self.conv(y, w23, _1x3, "branch2_3a", train)
        b2b = self.conv(y, w23, _3x1, "branch2_3b", train)
        b3 = self.conv(_avg_pool(x), w3, _1x1, "branch3", train)
        return jnp.concatenate((b0, b1a, b1b, b2a, b2b, b3), axis=-1)


class _InceptionNet(Classifier):
    """What Inception-v4 and Inception-ResNet-v2 share: input checks, the stem's first three
    convolutions, repeated blocks, the head (called inside the subclasses' `_forward`)."""

    def _start(self, x: jax.Array, train: bool) -> jax.Array:
        """Checks the input; the stem's 3x3/2 V, 3x3 V and 3x3 convolutions."""
        name = type(self).__name__
        if min(x.shape[1:3]) < MIN_IMAGE_SIZE:
            raise ValueError(
                f"{name} needs inputs of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} (unpadded "
                f"convolutions and a total stride of 32); got {x.shape[1]}x{x.shape[2]}"
            )
        for i, spec in enumerate((_3x3_S2V, _3x3_V, _3x3), start=1):
            x = self._conv(self.variant.widths("stem")[i - 1], spec, f"stem_conv{i}")(
                x, train=train
            )
        return x

    def _conv(self, features: int, spec: Spec, name: str) -> ConvBN:  # conv -> BN -> ReLU
        return conv_bn_relu(features, spec, self.variant.bn_epsilon, name, **self._kw)

    def _block(self, x: jax.Array, cls: type, table: str, train: bool, **opts: Any) -> jax.Array:
        """One block of the variant's width table `table`, named after it unless `opts` say."""
        opts = {"name": table, "bn_epsilon": self.variant.bn_epsilon, **self._kw, **opts}
        return cls(self.variant.widths(table), **opts)(x, train=train)

    def _head(self, taps: dict, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        """Global average pool -> dropout -> linear classifier."""
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.variant.dropout, deterministic=not train)(x)
        taps["logits"] = torch_dense(self.num_classes, x.shape[-1], "head", **self._kw)(x)
        return taps


class InceptionV4(_InceptionNet):
    """Inception-v4, NHWC (`variant`: `InceptionV4Variant`).

    Taps of `features` (sizes at 299 px): `stem`, (N, 35, 35, 384) after Mixed_5a; `stage1`,
    (N, 35, 35, 384) after the Inception-A blocks; `stage2`, (N, 17, 17, 1024) after Reduction-A
    and the Inception-B blocks; `stage3`, (N, 8, 8, 1536) after Reduction-B and the Inception-C
    blocks; `pre_logits`, (N, 1536) after global average pooling; `logits`, (N, num_classes).
    Channel counts scale with `width_mult`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, taps = self.variant, {}
        x = self._start(x, train)
        x = self._block(x, ConvBesidePool, "mixed_3a", train, pool_first=True)
        x = self._block(x, Mixed, "mixed_4a", train, branches=MIXED_4A)
        taps["stem"] = x = self._block(x, ConvBesidePool, "mixed_5a", train)
        stages = (
            (None, "inception_a", INCEPTION_A),
            (REDUCTION_A, "inception_b", INCEPTION_B),
            (REDUCTION_B, "inception_c", None),
        )
        for stage, (depth, (reduction, table, branches)) in enumerate(
            zip(v.depths, stages, strict=True), start=1
        ):
            if reduction is not None:
                name = "reduction_a" if stage == 2 else "reduction_b"
                x = self._block(x, Mixed, name, train, branches=reduction)
            cls, opts = (Mixed, {"branches": branches}) if branches else (InceptionC, {})
            for i in range(1, depth + 1):
                x = self._block(x, cls, table, train, name=f"{table}{i}", **opts)
            taps[f"stage{stage}"] = x
        return self._head(taps, x, train)


class InceptionResNetV2(_InceptionNet):
    """Inception-ResNet-v2, NHWC (`variant`: `InceptionResNetV2Variant`).

    Taps of `features` (sizes at 299 px): `stem`, (N, 35, 35, 320) after Mixed_5b; `stage1`,
    (N, 35, 35, 320) after the Inception-ResNet-A blocks; `stage2`, (N, 17, 17, 1088) after
    Reduction-A and the Inception-ResNet-B blocks; `stage3`, (N, 8, 8, 2080) after Reduction-B and
    the Inception-ResNet-C blocks; `final`, (N, 8, 8, 1536) after the last 1x1 conv; `pre_logits`,
    (N, 1536) after global average pooling; `logits`, (N, num_classes). Channel counts scale with
    `width_mult`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, taps = self.variant, {}
        s = v.widths("stem")
        x = _max_pool(self._start(x, train))
        x = self._conv(s[3], _1x1, "stem_conv4")(x, train=train)
        x = _max_pool(self._conv(s[4], _3x3_V, "stem_conv5")(x, train=train))
        taps["stem"] = x = self._block(x, Mixed, "mixed_5b", train, branches=MIXED_5B)
        stages = (
            (None, INCEPTION_RESNET_A),
            (REDUCTION_A, INCEPTION_RESNET_B),
            (INCEPTION_RESNET_REDUCTION_B, INCEPTION_RESNET_C),
        )
        for stage, (depth, scale, (reduction, branches)) in enumerate(
            zip(v.depths, v.scales, stages, strict=True), start=1
        ):
            if reduction is not None:
                name = "reduction_a" if stage == 2 else "reduction_b"
                x = self._block(x, Mixed, name, train, branches=reduction)
            table = "inception_resnet_" + "abc"[stage - 1]
            for i in range(1, depth + 1):
                # TF-slim's extra last block8: unscaled, linear.
                last = stage == 3 and i == depth
                opts = {"residual": True, "scale": 1.0 if last else scale, "activate": not last}
                x = self._block(
                    x, Mixed, table, train, name=f"{table}{i}", branches=branches, **opts
                )
            taps[f"stage{stage}"] = x
        taps["final"] = x = self._conv(v.widths("final"), _1x1, "final_conv")(x, train=train)
        return self._head(taps, x, train)


_PAPER = (
    "Szegedy et al. 2016, Inception-v4, Inception-ResNet and the Impact of Residual Connections "
    "on Learning (arXiv 1602.07261)"
)
# Figures: reference rows inception_v4 / inception_resnet_v2 (timm builds).
MODELS = (
    ModelSpec(
        "inception_v4",
        "inception_v4",
        InceptionV4,
        VARIANTS["inception_v4"],
        299,
        MIN_IMAGE_SIZE,
        _PAPER + ", Figs. 3-9",
        "timm / TF-slim layout (the paper's figures; BN epsilon 1e-3 after every conv)",
        "inception_v4",
    ),
    ModelSpec(
        "inception_resnet_v2",
        "inception_resnet_v2",
        InceptionResNetV2,
        VARIANTS["inception_resnet_v2"],
        299,
        MIN_IMAGE_SIZE,
        _PAPER + ", Figs. 7, 15-19",
        "timm / TF-slim release: Inception-v3-like stem with Mixed_5b (320 channels) instead of "
        "the Fig. 3 stem, residual stages at 320 / 1088 / 2080 channels, residual scales "
        "0.17 / 0.10 / 0.20, a final linear unscaled Inception-ResNet-C block and a 1x1 conv to 1536",
        "inception_resnet_v2",
    ),
)
