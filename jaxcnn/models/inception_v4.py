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
import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import batch_norm, torch_dense
from jaxcnn.models.base import Classifier, check_image_batch

# Smallest input side (see the module docstring).
MIN_IMAGE_SIZE = 75

# Convolution specs: (kernel height, kernel width, stride, padded). Padded convolutions keep the size
# at stride 1 (PyTorch's k // 2 on each side, the figures' unmarked layers); unpadded ones are the
# figures' "V" (valid) layers.
Spec = tuple[int, int, int, bool]
_1x1: Spec = (1, 1, 1, True)
_3x3: Spec = (3, 3, 1, True)
_1x3: Spec = (1, 3, 1, True)
_3x1: Spec = (3, 1, 1, True)
_1x7: Spec = (1, 7, 1, True)
_7x1: Spec = (7, 1, 1, True)
_3x3_V: Spec = (3, 3, 1, False)
_3x3_S2V: Spec = (3, 3, 2, False)


def kernel_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """He normal with fan_out (`jaxcnn.layers.conv_kernel_init`'s distribution), drawn flat.

    XLA:CPU (jaxlib 0.10.2) compiles a random draw over a 4-D shape with small dimensions slowly
    (measured on 2 busy cores: 10 s for one (3, 3, 8, 8) kernel, 2-3 s flat); the jitted `init` of
    the quarter-width Inception-ResNet-v2 of the training test compiled in 5 minutes with 4-D draws,
    in 1 minute flat.
    """
    std = math.sqrt(2.0 / (math.prod(shape[:-2]) * shape[-1]))
    return (jax.random.normal(key, (math.prod(shape),), dtype) * std).reshape(shape)


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


class ConvNormAct(nn.Module):
    """Bias-free convolution -> BatchNorm -> ReLU (timm's `ConvNormAct`, TF-slim's `conv2d`).

    Attributes:
        features: output channels.
        spec: (kernel height, kernel width, stride, padded); see the module's `_3x3`, `_1x7`, ...
        bn_epsilon: BatchNorm epsilon.
        dtype: computation dtype.
        param_dtype: parameter dtype.
    """

    features: int
    spec: Spec = _1x1
    bn_epsilon: float = 1e-3
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Args: x: (N, H, W, C_in). Returns: (N, H', W', features)."""
        kh, kw, stride, padded = self.spec
        pad = ((kh // 2, kh // 2), (kw // 2, kw // 2)) if padded else ((0, 0), (0, 0))
        kwargs = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = nn.Conv(
            self.features,
            (kh, kw),
            strides=(stride, stride),
            padding=pad,
            use_bias=False,
            kernel_init=kernel_init,
            name="conv",
            **kwargs,
        )(x)
        return nn.relu(batch_norm(train, name="bn", epsilon=self.bn_epsilon, **kwargs)(x))


def _max_pool(x: jax.Array) -> jax.Array:
    """The reductions' 3x3/2 V max pool."""
    return nn.max_pool(x, (3, 3), strides=(2, 2))


def _avg_pool(x: jax.Array) -> jax.Array:
    """The 3x3/1 average pool of the pooling branches; like TF's and timm's, it averages only the
    pixels inside the image (`count_include_pad=False`)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


class _Block(nn.Module):
    """A block of parallel branches; `widths` is its width table (see the variants)."""

    widths: Widths
    bn_epsilon: float = 1e-3
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def conv(self, x: jax.Array, features: int, spec: Spec, name: str, train: bool) -> jax.Array:
        return ConvNormAct(
            features,
            spec,
            self.bn_epsilon,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )(x, train=train)

    def branch(
        self, x: jax.Array, name: str, widths: Widths, specs: Sequence[Spec], train: bool
    ) -> jax.Array:
        """A chain of convolutions named `{name}_0`, `{name}_1`, ... (timm's nn.Sequential
        indices)."""
        for j, (features, spec) in enumerate(zip(widths, specs, strict=True)):
            x = self.conv(x, features, spec, f"{name}_{j}", train)
        return x


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


class Mixed4a(_Block):
    """The stem's two-branch module (Fig. 3): 1x1 -> 3x3 V | 1x1 -> 1x7 -> 7x1 -> 3x3 V."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        w0, w1 = self.widths
        b0 = self.branch(x, "branch0", w0, (_1x1, _3x3_V), train)
        b1 = self.branch(x, "branch1", w1, (_1x1, _1x7, _7x1, _3x3_V), train)
        return jnp.concatenate((b0, b1), axis=-1)


class InceptionA(_Block):
    """Inception-A (Fig. 4) at the 35x35 grid; with `branch1_kernel=5`, Inception-v3's Mixed_5b
    (Inception-ResNet-v2's last stem module)."""

    branch1_kernel: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        w0, w1, w2, w3 = self.widths
        k = self.branch1_kernel
        b0 = self.conv(x, w0, _1x1, "branch0", train)
        b1 = self.branch(x, "branch1", w1, (_1x1, (k, k, 1, True)), train)
        b2 = self.branch(x, "branch2", w2, (_1x1, _3x3, _3x3), train)
        b3 = self.conv(_avg_pool(x), w3, _1x1, "branch3", train)
        return jnp.concatenate((b0, b1, b2, b3), axis=-1)


class ReductionA(_Block):
    """Reduction-A (Fig. 7): 35x35 -> 17x17. Widths (n, (k, l, m)) in Table 1's letters."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        n, klm = self.widths
        b0 = self.conv(x, n, _3x3_S2V, "branch0", train)
        b1 = self.branch(x, "branch1", klm, (_1x1, _3x3, _3x3_S2V), train)
        return jnp.concatenate((b0, b1, _max_pool(x)), axis=-1)


class InceptionB(_Block):
    """Inception-B (Fig. 5) at the 17x17 grid: factorised 7x7 convolutions."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        w0, w1, w2, w3 = self.widths
        b0 = self.conv(x, w0, _1x1, "branch0", train)
        b1 = self.branch(x, "branch1", w1, (_1x1, _1x7, _7x1), train)
        b2 = self.branch(x, "branch2", w2, (_1x1, _7x1, _1x7, _7x1, _1x7), train)
        b3 = self.conv(_avg_pool(x), w3, _1x1, "branch3", train)
        return jnp.concatenate((b0, b1, b2, b3), axis=-1)


class ReductionB(_Block):
    """Inception-v4's Reduction-B (Fig. 8): 17x17 -> 8x8."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        w0, w1 = self.widths
        b0 = self.branch(x, "branch0", w0, (_1x1, _3x3_S2V), train)
        b1 = self.branch(x, "branch1", w1, (_1x1, _1x7, _7x1, _3x3_S2V), train)
        return jnp.concatenate((b0, b1, _max_pool(x)), axis=-1)


class InceptionC(_Block):
    """Inception-C (Fig. 6) at the 8x8 grid: two branches end in a parallel 1x3 / 3x1 pair.

    Its convolutions keep timm's names (`branch1_0`, `branch1_1a`, `branch1_1b`, `branch2_0` ..
    `branch2_3b`): here they are attributes, not nn.Sequential indices.
    """

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


class _Residual(_Block):
    """An Inception-ResNet block: `act(x + scale * project(concat(branches)))`.

    `project` is the figures' "1x1 Conv (Linear)": a convolution with a bias, no BN, back to the
    input's width, so any width table fits any input.
    """

    scale: float = 1.0
    activate: bool = True

    def residual(self, x: jax.Array, branches: Sequence[jax.Array]) -> jax.Array:
        y = nn.Conv(
            x.shape[-1],
            (1, 1),
            kernel_init=kernel_init,
            name="project",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )(jnp.concatenate(branches, axis=-1))
        y = x + self.scale * y
        return nn.relu(y) if self.activate else y


class InceptionResNetA(_Residual):
    """Inception-ResNet-A (Fig. 16, TF-slim's block35) at the 35x35 grid."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        w0, w1, w2 = self.widths
        b0 = self.conv(x, w0, _1x1, "branch0", train)
        b1 = self.branch(x, "branch1", w1, (_1x1, _3x3), train)
        b2 = self.branch(x, "branch2", w2, (_1x1, _3x3, _3x3), train)
        return self.residual(x, (b0, b1, b2))


class InceptionResNetB(_Residual):
    """Inception-ResNet-B (Fig. 17, TF-slim's block17) at the 17x17 grid."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        w0, w1 = self.widths
        b0 = self.conv(x, w0, _1x1, "branch0", train)
        b1 = self.branch(x, "branch1", w1, (_1x1, _1x7, _7x1), train)
        return self.residual(x, (b0, b1))


class InceptionResNetC(_Residual):
    """Inception-ResNet-C (Fig. 19, TF-slim's block8) at the 8x8 grid."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        w0, w1 = self.widths
        b0 = self.conv(x, w0, _1x1, "branch0", train)
        b1 = self.branch(x, "branch1", w1, (_1x1, _1x3, _3x1), train)
        return self.residual(x, (b0, b1))


class InceptionResNetReductionB(_Block):
    """Inception-ResNet-v2's Reduction-B (Fig. 18, TF-slim's Mixed_7a): 17x17 -> 8x8."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        w0, w1, w2 = self.widths
        b0 = self.branch(x, "branch0", w0, (_1x1, _3x3_S2V), train)
        b1 = self.branch(x, "branch1", w1, (_1x1, _3x3_S2V), train)
        b2 = self.branch(x, "branch2", w2, (_1x1, _3x3, _3x3_S2V), train)
        return jnp.concatenate((b0, b1, b2, _max_pool(x)), axis=-1)


def _check_size(x: jax.Array, name: str) -> None:
    if min(x.shape[1:3]) < MIN_IMAGE_SIZE:
        raise ValueError(
            f"{name} needs inputs of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} (unpadded "
            f"convolutions and a total stride of 32); got {x.shape[1]}x{x.shape[2]}"
        )


class InceptionV4(Classifier):
    """Inception-v4, NHWC (`variant`: `InceptionV4Variant`).

    Taps of `features` (sizes at 299 px): `stem`, (N, 35, 35, 384) after Mixed_5a; `stage1`,
    (N, 35, 35, 384) after the Inception-A blocks; `stage2`, (N, 17, 17, 1024) after Reduction-A
    and the Inception-B blocks; `stage3`, (N, 8, 8, 1536) after Reduction-B and the Inception-C
    blocks; `pre_logits`, (N, 1536) after global average pooling; `logits`, (N, num_classes).
    Channel counts scale with `width_mult`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        check_image_batch(x, "InceptionV4")
        _check_size(x, "InceptionV4")
        v, kw = self.variant, self._kw
        block = {"bn_epsilon": v.bn_epsilon, **kw}
        conv = functools.partial(ConvNormAct, bn_epsilon=v.bn_epsilon, **kw)
        taps, x = {}, x.astype(self.dtype)
        s = v.widths("stem")
        x = conv(s[0], _3x3_S2V, name="stem_conv1")(x, train=train)
        x = conv(s[1], _3x3_V, name="stem_conv2")(x, train=train)
        x = conv(s[2], _3x3, name="stem_conv3")(x, train=train)
        x = ConvBesidePool(v.widths("mixed_3a"), pool_first=True, name="mixed_3a", **block)(
            x, train=train
        )
        x = Mixed4a(v.widths("mixed_4a"), name="mixed_4a", **block)(x, train=train)
        x = ConvBesidePool(v.widths("mixed_5a"), name="mixed_5a", **block)(x, train=train)
        taps["stem"] = x
        n_a, n_b, n_c = v.depths
        for i in range(1, n_a + 1):
            x = InceptionA(v.widths("inception_a"), name=f"inception_a{i}", **block)(x, train=train)
        taps["stage1"] = x
        x = ReductionA(v.widths("reduction_a"), name="reduction_a", **block)(x, train=train)
        for i in range(1, n_b + 1):
            x = InceptionB(v.widths("inception_b"), name=f"inception_b{i}", **block)(x, train=train)
        taps["stage2"] = x
        x = ReductionB(v.widths("reduction_b"), name="reduction_b", **block)(x, train=train)
        for i in range(1, n_c + 1):
            x = InceptionC(v.widths("inception_c"), name=f"inception_c{i}", **block)(x, train=train)
        taps["stage3"] = x
        return _head(self, taps, x, train)


class InceptionResNetV2(Classifier):
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
        check_image_batch(x, "InceptionResNetV2")
        _check_size(x, "InceptionResNetV2")
        v, kw = self.variant, self._kw
        block = {"bn_epsilon": v.bn_epsilon, **kw}
        conv = functools.partial(ConvNormAct, bn_epsilon=v.bn_epsilon, **kw)
        taps, x = {}, x.astype(self.dtype)
        s = v.widths("stem")
        x = conv(s[0], _3x3_S2V, name="stem_conv1")(x, train=train)
        x = conv(s[1], _3x3_V, name="stem_conv2")(x, train=train)
        x = conv(s[2], _3x3, name="stem_conv3")(x, train=train)
        x = _max_pool(x)
        x = conv(s[3], _1x1, name="stem_conv4")(x, train=train)
        x = conv(s[4], _3x3_V, name="stem_conv5")(x, train=train)
        x = _max_pool(x)
        x = InceptionA(v.widths("mixed_5b"), branch1_kernel=5, name="mixed_5b", **block)(
            x, train=train
        )
        taps["stem"] = x
        (n_a, n_b, n_c), (s_a, s_b, s_c) = v.depths, v.scales
        for i in range(1, n_a + 1):
            x = InceptionResNetA(
                v.widths("inception_resnet_a"), scale=s_a, name=f"inception_resnet_a{i}", **block
            )(x, train=train)
        taps["stage1"] = x
        x = ReductionA(v.widths("reduction_a"), name="reduction_a", **block)(x, train=train)
        for i in range(1, n_b + 1):
            x = InceptionResNetB(
                v.widths("inception_resnet_b"), scale=s_b, name=f"inception_resnet_b{i}", **block
            )(x, train=train)
        taps["stage2"] = x
        x = InceptionResNetReductionB(v.widths("reduction_b"), name="reduction_b", **block)(
            x, train=train
        )
        for i in range(1, n_c + 1):
            last = i == n_c  # TF-slim's extra block8: unscaled, linear
            x = InceptionResNetC(
                v.widths("inception_resnet_c"),
                scale=1.0 if last else s_c,
                activate=not last,
                name=f"inception_resnet_c{i}",
                **block,
            )(x, train=train)
        taps["stage3"] = x
        taps["final"] = x = conv(v.widths("final"), _1x1, name="final_conv")(x, train=train)
        return _head(self, taps, x, train)


def _head(model: Classifier, taps: dict, x: jax.Array, train: bool) -> dict[str, jax.Array]:
    """Global average pool -> dropout -> linear classifier (called inside `_forward`)."""
    taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(model.variant.dropout, deterministic=not train)(x)
    taps["logits"] = torch_dense(model.num_classes, x.shape[-1], "head", **model._kw)(x)
    return taps


_PAPER = (
    "Szegedy et al. 2016, Inception-v4, Inception-ResNet and the Impact of Residual Connections "
    "on Learning (arXiv 1602.07261)"
)
# name -> (paper, reference params, reference MACs at 299 px, notes). Params and MACs:
# ../shared/reference/reference_numbers.md (timm builds; MACs count conv and linear layers only).
REFERENCE: dict[str, tuple[str, int, int, str]] = {
    "inception_v4": (
        _PAPER + ", Figs. 3-9",
        42_679_816,
        12_253_974_624,
        "timm / TF-slim layout (the paper's figures; BN epsilon 1e-3 after every conv)",
    ),
    "inception_resnet_v2": (
        _PAPER + ", Figs. 7, 15-19",
        55_843_464,
        13_155_794_016,
        "timm / TF-slim release: Inception-v3-like stem with Mixed_5b (320 channels) instead of "
        "the Fig. 3 stem, residual stages at 320 / 1088 / 2080 channels, residual scales "
        "0.17 / 0.10 / 0.20, a final linear unscaled Inception-ResNet-C block and a 1x1 conv to 1536",
    ),
}
_MODULES = {"inception_v4": InceptionV4, "inception_resnet_v2": InceptionResNetV2}


def registry_entries():
    """(name, family, module, variant, native resolution, smallest input side) of each variant."""
    for name, v in VARIANTS.items():
        yield name, name, _MODULES[name], v, 299, MIN_IMAGE_SIZE
