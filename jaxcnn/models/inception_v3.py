"""Inception-v3, in torchvision's (= TF-slim's = timm's) layout, with its auxiliary classifier.

Paper: Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer Vision" (arXiv
1512.00567), Table 1: a stem of plain convolutions (Sec. 6), three Inception modules at 35x35
(Fig. 5: the 5x5 factorised into two 3x3), a grid reduction (Fig. 10), four modules at 17x17 with
factorised n x 1 / 1 x n convolutions (Fig. 6, n = 7), a second grid reduction, two modules at 8x8
with expanded filter banks (Fig. 7), global average pooling, dropout, a linear classifier; and one
auxiliary classifier on the last 17x17 layer (Sec. 4, Fig. 8), with BatchNorm, which the paper
uses as a regulariser. The exact filter counts are those of Google's released model (TF-slim
`inception_v3`), which torchvision and timm port; the paper's table gives only the grid sizes.

Layout: every convolution is bias-free, followed by BatchNorm (epsilon 1e-3) and ReLU; padding is
PyTorch's (symmetric), so the grid is 299 -> 149 -> 147 -> 73 -> 71 -> 35 -> 17 -> 8. Module names
are torchvision's and timm's (`Conv2d_1a_3x3`, `Mixed_5b`, `branch3x3dbl_2`, `AuxLogits`, ...), so
both state dicts convert by name; the classifiers are `head` and `AuxLogits/head` (torchvision's
`fc`, `AuxLogits.fc`). torchvision's `transform_input` (False without pretrained weights) is not
applied: inputs go in as given. Initialisation is torchvision's: normal with std 0.1 (0.01 for the
auxiliary 5x5 convolution, 0.001 for its classifier), BN scale 1 and shift 0.

Auxiliary classifier: 5x5/3 average pool, 1x1 conv 128, 5x5 conv 768 (valid), global average pool,
linear. It needs a 17x17 map (299 px inputs): torchvision's fails below that in train mode. Here a
smaller map is average-pooled adaptively to 5x5 instead (pixels repeat below 5x5), so every input
from 75 px up works in both modes; from 299 px up the head is exactly torchvision's. With
`aux_logits=True`, `model.apply(v, x, train=True)` returns `(logits, (aux1,))`; the training loss is
`CE(logits) + aux_weight * CE(aux1)` with `aux_weight` 0.4, the weight of Google's TF-slim training
script (`train_image_classifier.py`: `weights=0.4` on the `AuxLogits` loss); the paper does not
state one. In eval mode the model returns the logits only; the head runs in both modes so that
`init(..., train=False)` creates it.

Smallest input: 75 px (as torchvision's), where the 8x8 grid is 1x1.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, normal_init, torch_linear_init
from jaxcnn.layers.pooling import adaptive_avg_pool
from jaxcnn.models.base import AuxClassifier, ModelSpec, Module

# torchvision's init: trunc_normal_(std, a=-2, b=2) truncates at >= 20 std, i.e. a plain normal.
_STD = 0.1


def _conv(
    features: int,
    kernel: int | tuple[int, int],
    name: str,
    strides: int = 1,
    padding: int | tuple[int, int] = 0,
    std: float = _STD,
    **kw: Any,
) -> ConvBN:
    """torchvision's `BasicConv2d`: bias-free conv (symmetric `padding`, 0 = valid) -> BN -> ReLU.
    `kw`: bn_epsilon, dtypes."""
    return ConvBN(
        features, kernel, strides, padding=padding, kernel_init=normal_init(std), name=name, **kw
    )


class _Block(Module):
    """Shared attributes of the Inception-v3 blocks.

    Attributes:
        widths: the block's filter counts (the order is given by each subclass).
        bn_epsilon: BatchNorm epsilon.
    """

    widths: tuple[int, ...]
    bn_epsilon: float = 1e-3

    def conv(self, features: int, kernel: int | tuple[int, int], name: str, **kw: Any) -> ConvBN:
        """A `BasicConv2d` of the block (`kw`: strides, padding, std)."""
        return _conv(features, kernel, name, bn_epsilon=self.bn_epsilon, **kw, **self._kw)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
    # F.avg_pool2d(x, 3, 1, 1): count_include_pad=True, the zero padding counts in the mean.
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=True)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(_Block):
    """35x35 module (Fig. 5). widths: (1x1, 5x5 reduce, 5x5, 3x3dbl reduce, 3x3dbl, pool proj)."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        c1, c5r, c5, c3r, c3, cp = self.widths
        b1 = self.conv(c1, 1, "branch1x1")(x, train=train)
        b5 = self.conv(c5r, 1, "branch5x5_1")(x, train=train)
        b5 = self.conv(c5, 5, "branch5x5_2", padding=2)(b5, train=train)
        b3 = self.conv(c3r, 1, "branch3x3dbl_1")(x, train=train)
        b3 = self.conv(c3, 3, "branch3x3dbl_2", padding=1)(b3, train=train)
        b3 = self.conv(c3, 3, "branch3x3dbl_3", padding=1)(b3, train=train)
        bp = self.conv(cp, 1, "branch_pool")(_avg_pool_3x3(x), train=train)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
    """35x35 -> 17x17 grid reduction (Fig. 10). widths: (3x3/2, 3x3dbl reduce, 3x3dbl)."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        c3, cdr, cd = self.widths
        b3 = self.conv(c3, 3, "branch3x3", strides=2)(x, train=train)
        bd = self.conv(cdr, 1, "branch3x3dbl_1")(x, train=train)
        bd = self.conv(cd, 3, "branch3x3dbl_2", padding=1)(bd, train=train)
        bd = self.conv(cd, 3, "branch3x3dbl_3", strides=2)(bd, train=train)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(_Block):
    """17x17 module with factorised 7x7 convolutions (Fig. 6, n = 7).

    widths: (output of each branch, inner width of the 7x7 branches).
    """

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        out, c7 = self.widths
        b1 = self.conv(out, 1, "branch1x1")(x, train=train)
        b7 = self.conv(c7, 1, "branch7x7_1")(x, train=train)
        b7 = self.conv(c7, (1, 7), "branch7x7_2", padding=(0, 3))(b7, train=train)
        b7 = self.conv(out, (7, 1), "branch7x7_3", padding=(3, 0))(b7, train=train)
        bd = self.conv(c7, 1, "branch7x7dbl_1")(x, train=train)
        bd = self.conv(c7, (7, 1), "branch7x7dbl_2", padding=(3, 0))(bd, train=train)
        bd = self.conv(c7, (1, 7), "branch7x7dbl_3", padding=(0, 3))(bd, train=train)
        bd = self.conv(c7, (7, 1), "branch7x7dbl_4", padding=(3, 0))(bd, train=train)
        bd = self.conv(out, (1, 7), "branch7x7dbl_5", padding=(0, 3))(bd, train=train)
        bp = self.conv(out, 1, "branch_pool")(_avg_pool_3x3(x), train=train)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
    """17x17 -> 8x8 grid reduction. widths: (3x3 reduce, 3x3/2, width of the 7x7x3 branch)."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        c3r, c3, c7 = self.widths
        b3 = self.conv(c3r, 1, "branch3x3_1")(x, train=train)
        b3 = self.conv(c3, 3, "branch3x3_2", strides=2)(b3, train=train)
        b7 = self.conv(c7, 1, "branch7x7x3_1")(x, train=train)
        b7 = self.conv(c7, (1, 7), "branch7x7x3_2", padding=(0, 3))(b7, train=train)
        b7 = self.conv(c7, (7, 1), "branch7x7x3_3", padding=(3, 0))(b7, train=train)
        b7 = self.conv(c7, 3, "branch7x7x3_4", strides=2)(b7, train=train)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(_Block):
    """8x8 module with expanded filter banks (Fig. 7): the 3x3s split into parallel 1x3 and 3x1.

    widths: (1x1, 3x3 (reduce and each split), 3x3dbl reduce, 3x3dbl (and each split), pool proj).
    """

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        c1, c3, cdr, cd, cp = self.widths
        b1 = self.conv(c1, 1, "branch1x1")(x, train=train)
        b3 = self.conv(c3, 1, "branch3x3_1")(x, train=train)
        b3 = jnp.concatenate(
            [
                self.conv(c3, (1, 3), "branch3x3_2a", padding=(0, 1))(b3, train=train),
                self.conv(c3, (3, 1), "branch3x3_2b", padding=(1, 0))(b3, train=train),
            ],
            axis=-1,
        )
        bd = self.conv(cdr, 1, "branch3x3dbl_1")(x, train=train)
        bd = self.conv(cd, 3, "branch3x3dbl_2", padding=1)(bd, train=train)
        bd = jnp.concatenate(
            [
                self.conv(cd, (1, 3), "branch3x3dbl_3a", padding=(0, 1))(bd, train=train),
                self.conv(cd, (3, 1), "branch3x3dbl_3b", padding=(1, 0))(bd, train=train),
            ],
            axis=-1,
        )
        bp = self.conv(cp, 1, "branch_pool")(_avg_pool_3x3(x), train=train)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(_Block):
    """Auxiliary classifier (Fig. 8). widths: (1x1 conv, 5x5 conv).

    Attributes:
        num_classes: classifier outputs.
    """

    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Args: x: (N, 17, 17, C) at 299 px. Returns: (N, num_classes)."""
        c0, c1 = self.widths
        # torchvision's 5x5/3 pool gives the 5x5 conv its 5x5 input from a 17x17 map on; smaller
        # maps (where torchvision fails) are averaged, or their pixels repeated, to 5x5.
        small = min(x.shape[1:3]) < 17
        x = adaptive_avg_pool(x, 5) if small else nn.avg_pool(x, (5, 5), (3, 3))
        x = self.conv(c0, 1, "conv0")(x, train=train)
        x = self.conv(c1, 5, "conv1", std=0.01)(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(
            self.num_classes,
            kernel_init=normal_init(0.001),
            bias_init=torch_linear_init(c1)[1],
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="head",
        )(x)


_BLOCKS = {"a": InceptionA, "b": InceptionB, "c": InceptionC, "d": InceptionD, "e": InceptionE}

# (name, kind, widths) of the Mixed blocks of torchvision's / TF-slim's Inception-v3.
TORCHVISION_BLOCKS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("Mixed_5b", "a", (64, 48, 64, 64, 96, 32)),
    ("Mixed_5c", "a", (64, 48, 64, 64, 96, 64)),
    ("Mixed_5d", "a", (64, 48, 64, 64, 96, 64)),
    ("Mixed_6a", "b", (384, 64, 96)),
    ("Mixed_6b", "c", (192, 128)),
    ("Mixed_6c", "c", (192, 160)),
    ("Mixed_6d", "c", (192, 160)),
    ("Mixed_6e", "c", (192, 192)),
    ("Mixed_7a", "d", (192, 320, 192)),
    ("Mixed_7b", "e", (320, 384, 448, 384, 192)),
    ("Mixed_7c", "e", (320, 384, 448, 384, 192)),
)


@dataclasses.dataclass(frozen=True)
class InceptionV3Variant:
    """One Inception-v3 build, as data.

    Attributes:
        stem: widths of Conv2d_1a_3x3 (3x3/2), 2a (3x3), 2b (3x3, padded), 3b (1x1), 4a (3x3).
        blocks: (name, kind "a".."e", widths) of each Mixed block, in order.
        aux_logits: build the auxiliary classifier.
        aux_weight: weight of the auxiliary loss (0.4: TF-slim's training script).
        aux_after: the block whose output feeds the auxiliary classifier.
        aux_widths: the auxiliary 1x1 and 5x5 convolutions' filters.
        dropout: dropout before the classifier (torchvision 0.5).
        bn_epsilon: BatchNorm epsilon (1e-3, as TF-slim and torchvision).
        width_mult: multiplier of every channel count (1.0: the published network; smaller for tests).
        num_classes: classes of the native head.
    """

    stem: tuple[int, ...] = (32, 32, 64, 80, 192)
    blocks: tuple[tuple[str, str, tuple[int, ...]], ...] = TORCHVISION_BLOCKS
    aux_logits: bool = True
    aux_weight: float = 0.4
    aux_after: str = "Mixed_6e"
    aux_widths: tuple[int, int] = (128, 768)
    dropout: float = 0.5
    bn_epsilon: float = 1e-3
    width_mult: float = 1.0
    num_classes: int = 1000


VARIANTS: dict[str, InceptionV3Variant] = {"inception_v3": InceptionV3Variant()}


def _grid(block_name: str) -> str:
    """The grid of a block from its TF-slim name: "Mixed_6b" -> "6" (5: 35x35, 6: 17x17, 7: 8x8)."""
    return block_name.removeprefix("Mixed_")[:1]


def _scale(widths: tuple[int, ...], width: float) -> tuple[int, ...]:
    return tuple(max(1, round(c * width)) for c in widths)


class InceptionV3(AuxClassifier):
    """Inception-v3, NHWC (`variant`: `VARIANTS`).

    `__call__(x, train=True)` returns `(logits, (aux1,))` when `variant.aux_logits`, else logits.

    Taps of `features` (sizes at 299 px): `stem`, after the second max pool, (N, 35, 35, 192);
    `mixed5`, `mixed6`, `mixed7`, the outputs of the last 35x35, 17x17 and 8x8 blocks,
    (N, 35, 35, 288), (N, 17, 17, 768), (N, 8, 8, 2048); `aux1`, the auxiliary logits
    (N, num_classes), when `aux_logits` (in both modes); `pre_logits`, the global average pool,
    (N, 2048); `logits`, (N, num_classes). Channel counts are those of `width_mult=1`.
    """

    def aux_count(self) -> int:
        return 1

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        if min(x.shape[1:3]) < 75:
            raise ValueError(
                f"InceptionV3 needs inputs of at least 75x75 pixels; got {x.shape[1]}x{x.shape[2]}"
            )
        v, kw = self.variant, self._kw
        block_kw = {"bn_epsilon": v.bn_epsilon, **kw}
        taps = {}
        s1a, s2a, s2b, s3b, s4a = _scale(v.stem, v.width_mult)

        def conv(features: int, kernel: int, name: str, **opts: Any) -> ConvBN:
            return _conv(features, kernel, name, bn_epsilon=v.bn_epsilon, **opts, **kw)

        x = conv(s1a, 3, "Conv2d_1a_3x3", strides=2)(x, train=train)
        x = conv(s2a, 3, "Conv2d_2a_3x3")(x, train=train)
        x = conv(s2b, 3, "Conv2d_2b_3x3", padding=1)(x, train=train)
        x = _max_pool_3x3_s2(x)
        x = conv(s3b, 1, "Conv2d_3b_1x1")(x, train=train)
        x = conv(s4a, 3, "Conv2d_4a_3x3")(x, train=train)
        x = _max_pool_3x3_s2(x)
        taps["stem"] = x
        for i, (name, kind, widths) in enumerate(v.blocks):
            x = _BLOCKS[kind](_scale(widths, v.width_mult), name=name, **block_kw)(x, train=train)
            if v.aux_logits and name == v.aux_after:
                taps["aux1"] = InceptionAux(
                    _scale(v.aux_widths, v.width_mult),
                    num_classes=self.num_classes,
                    name="AuxLogits",
                    **block_kw,
                )(x, train=train)
            if i + 1 == len(v.blocks) or _grid(v.blocks[i + 1][0]) != _grid(name):
                taps[f"mixed{_grid(name)}"] = x  # the last block of a grid size
        if v.aux_logits and "aux1" not in taps:
            raise ValueError(
                f"InceptionV3: aux_after={v.aux_after!r} is not one of its blocks "
                f"{[name for name, *_ in v.blocks]}"
            )
        x = jnp.mean(x, axis=(1, 2))
        taps["pre_logits"] = x
        x = nn.Dropout(v.dropout, deterministic=not train)(x)
        taps["logits"] = nn.Dense(
            self.num_classes,
            kernel_init=normal_init(_STD),
            bias_init=torch_linear_init(x.shape[-1])[1],
            name="head",
            **kw,
        )(x)
        return taps


# Reference row inception_v3_tv_aux: params with the auxiliary classifier (23,834,568 without it,
# row inception_v3); MACs of the inference network, conv + linear.
MODELS = (
    ModelSpec(
        "inception_v3",
        "inception_v3",
        InceptionV3,
        VARIANTS["inception_v3"],
        299,
        75,
        "Szegedy et al. 2015, Rethinking the Inception Architecture for Computer Vision "
        "(arXiv 1512.00567), Table 1",
        "torchvision / TF-slim filter counts; params include the auxiliary classifier "
        "(23,834,568 without: aux_logits=False); auxiliary pool adaptive 5x5 below 299 px",
        "inception_v3_tv_aux",
    ),
)
