"""DenseNet (Huang et al. 2017, "Densely Connected Convolutional Networks", Tables 1 and 2).

Each layer of a dense block sees the concatenation of every earlier output in the block and adds
`growth_rate` new channels. Layers are pre-activation: BN -> ReLU -> conv. DenseNet-B adds a 1x1
bottleneck to `bn_size * growth_rate` channels before the 3x3; DenseNet-C compresses the channels by
`compression` in each transition (BN -> ReLU -> 1x1 conv -> 2x2 average pool). Convolutions have no
bias.

- ImageNet (DenseNet-BC 121/161/169/201, torchvision's layout): 7x7/2 stem + 3x3/2 max pool, four
  blocks, a final BN + ReLU, global average pool, linear head.
- CIFAR (Sec. 3, Table 2): a 3x3 stem conv (16 channels, or 2k for BC), three blocks of equal depth,
  L = 3n + 4 (DenseNet) or 6n + 4 (DenseNet-BC).

Parameter tree: `stem_conv`, `stem_norm` (ImageNet only), `block{b}_layer{l}/{norm1,conv1,
norm2,conv2}` (`norm1`, `conv1` = the 1x1 bottleneck, absent without one), `transition{b}/{norm,conv}`,
`final_norm`, `head`.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import bn_relu, conv2d, torch_linear_init
from jaxcnn.models.base import Classifier, ModelSpec, Module


@dataclasses.dataclass(frozen=True)
class DenseNetVariant:
    """One DenseNet.

    Attributes:
        growth_rate: k, channels each layer adds.
        blocks: layers in each dense block.
        init_features: channels of the stem convolution.
        bn_size: bottleneck width as a multiple of k (DenseNet-B); None for no bottleneck.
        compression: channel factor of each transition (DenseNet-C: 0.5).
        stem: "imagenet" or "cifar".
        drop_rate: dropout after each layer's last convolution (train mode only).
        num_classes: classes of the native head.
    """

    growth_rate: int
    blocks: tuple[int, ...]
    init_features: int
    bn_size: int | None = 4
    compression: float = 0.5
    stem: str = "imagenet"
    drop_rate: float = 0.0
    num_classes: int = 1000


def _cifar(depth: int, k: int, bc: bool) -> DenseNetVariant:
    n = (depth - 4) // (6 if bc else 3)  # a bottleneck layer holds two convolutions
    return DenseNetVariant(
        growth_rate=k,
        blocks=(n, n, n),
        init_features=2 * k if bc else 16,
        bn_size=4 if bc else None,
        compression=0.5 if bc else 1.0,
        stem="cifar",
        num_classes=10,
    )


# Huang et al. 2017, Table 1 (ImageNet) and Table 2 (CIFAR).
VARIANTS: dict[str, DenseNetVariant] = {
    "densenet121": DenseNetVariant(32, (6, 12, 24, 16), 64),
    "densenet161": DenseNetVariant(48, (6, 12, 36, 24), 96),
    "densenet169": DenseNetVariant(32, (6, 12, 32, 32), 64),
    "densenet201": DenseNetVariant(32, (6, 12, 48, 32), 64),
    "densenet40_k12": _cifar(40, 12, bc=False),
    "densenet_bc100_k12": _cifar(100, 12, bc=True),
    "densenet_bc250_k24": _cifar(250, 24, bc=True),
    "densenet_bc190_k40": _cifar(190, 40, bc=True),
}


class DenseLayer(Module):
    """[BN -> ReLU -> 1x1 conv to bn_size*k] -> BN -> ReLU -> 3x3 conv to k -> dropout."""

    growth_rate: int
    bn_size: int | None
    drop_rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw = self._kw
        if self.bn_size is not None:
            x = conv2d(self.bn_size * self.growth_rate, 1, name="conv1", **kw)(
                bn_relu(x, train, "norm1", **kw)
            )
        x = bn_relu(x, train, "norm2", **kw)
        x = conv2d(self.growth_rate, 3, name="conv2", **kw)(x)
        return nn.Dropout(self.drop_rate, deterministic=not train)(x)


class DenseNet(Classifier):
    """DenseNet / DenseNet-BC, NHWC (`variant`: `VARIANTS`).

    Taps of `features`: `stem`; `block{b}`, the output of dense block b (before its transition),
    init_features + k * layers channels for the first block; `pre_logits` (N, C_final) after the
    final BN + ReLU and global pooling (1024 for densenet121); `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        if v.stem == "imagenet":
            x = conv2d(v.init_features, 7, 2, name="stem_conv", **kw)(x)
            x = bn_relu(x, train, "stem_norm", **kw)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:  # pre-activation from here on: the first block's BN follows directly
            x = conv2d(v.init_features, 3, name="stem_conv", **kw)(x)
        taps["stem"] = x
        for b, layers in enumerate(v.blocks, start=1):
            for i in range(1, layers + 1):
                new = DenseLayer(
                    v.growth_rate, v.bn_size, v.drop_rate, name=f"block{b}_layer{i}", **kw
                )
                x = jnp.concatenate([x, new(x, train=train)], axis=-1)
            taps[f"block{b}"] = x
            if b < len(v.blocks):
                x = Transition(int(x.shape[-1] * v.compression), name=f"transition{b}", **kw)(
                    x, train=train
                )
        x = bn_relu(x, train, "final_norm", **kw)
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        kernel_init, _ = torch_linear_init(x.shape[-1])
        # torchvision's DenseNet initialises the classifier bias to zero.
        taps["logits"] = nn.Dense(self.num_classes, kernel_init=kernel_init, name="head", **kw)(x)
        return taps


class Transition(Module):
    """BN -> ReLU -> 1x1 conv (compression) -> 2x2 average pool."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = conv2d(self.features, 1, name="conv", **self._kw)(bn_relu(x, train, "norm", **self._kw))
        return nn.avg_pool(x, (2, 2), strides=(2, 2))


_PAPER = "Huang et al. 2017, Densely Connected Convolutional Networks"
_TABLES = {
    "densenet121": "Table 1",
    "densenet161": "Table 1 (k=48, as released)",
    "densenet169": "Table 1",
    "densenet201": "Table 1",
    "densenet40_k12": "Table 2 (DenseNet L=40, k=12)",
    "densenet_bc100_k12": "Table 2 (DenseNet-BC L=100, k=12)",
    "densenet_bc250_k24": "Table 2 (DenseNet-BC L=250, k=24)",
    "densenet_bc190_k40": "Table 2 (DenseNet-BC L=190, k=40)",
}


# stem -> (family, native resolution, smallest input side, suffix of the reference key)
_STEMS = {"imagenet": ("densenet", 224, 32, ""), "cifar": ("densenet_cifar", 32, 4, "_cifar")}
MODELS = tuple(
    ModelSpec(name, fam, DenseNet, v, res, size, f"{_PAPER}, {_TABLES[name]}", "", name + suffix)
    for name, v in VARIANTS.items()
    for fam, res, size, suffix in [_STEMS[v.stem]]
)
