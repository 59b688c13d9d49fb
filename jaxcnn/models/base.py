"""What every family of the zoo shares: the `Classifier` base (attributes, `__call__` /
`features`, input checks), the registry row `ModelSpec`, and the ResNet variant that the post- and
pre-activation ResNets both read."""

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp


def stage_blocks(
    depths: tuple[int, ...], widths: tuple[int, ...]
) -> Iterator[tuple[int, int, int, int]]:
    """(stage, block, width, strides) of every block of a staged network, stages and blocks
    numbered from 1: stride 2 on the first block of each stage but the first."""
    for s, (depth, width) in enumerate(zip(depths, widths, strict=True), start=1):
        for b in range(1, depth + 1):
            yield s, b, width, 2 if (b == 1 and s > 1) else 1


def check_image_batch(x: jax.Array, name: str) -> None:
    """Raises a ValueError unless `x` is a batch of NHWC images."""
    if x.ndim != 4:
        raise ValueError(
            f"{name} expects a batch of NHWC images of shape (N, H, W, C); got shape {tuple(x.shape)}"
            + (" (add a batch axis: x[None])" if x.ndim == 3 else "")
        )


class Module(nn.Module):
    """Base of the families' blocks: the dtypes as keyword-only attributes (so that subclasses
    declare their own attributes first, positionally) and `_kw` to hand them to children.

    Attributes:
        dtype: computation dtype.
        param_dtype: parameter dtype.
    """

    dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)
    param_dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)

    @property
    def _kw(self) -> dict[str, Any]:
        """dtype keyword arguments for submodules."""
        return {"dtype": self.dtype, "param_dtype": self.param_dtype}


class Classifier(nn.Module):
    """Base of the zoo's networks: a variant (frozen dataclass), a head, dtypes.

    Subclasses implement `_forward(x, train) -> dict` as their one `@nn.compact` method (`x` is
    already checked to be an NHWC batch and cast to `dtype`), returning named taps that end with
    `pre_logits` and `logits`; each family's class docstring lists its taps.

    Attributes:
        variant: the architecture, as data (each family's `VARIANTS`).
        num_classes: classifier outputs.
        dtype: computation dtype (e.g. jnp.bfloat16 for mixed precision).
        param_dtype: parameter dtype.
    """

    variant: Any
    num_classes: int = 1000
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Classifies a batch.

        Args:
            x: images, (N, H, W, C), any channel count.
            train: batch statistics and their update, dropout (True), or running statistics (False).

        Returns:
            Logits, (N, num_classes).
        """
        return self._taps(x, train)["logits"]

    def features(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """Named intermediate activations for transfer learning (see the class docstring).

        Args:
            x: images, (N, H, W, C).
            train: as in `__call__`.

        Returns:
            name -> array; always `pre_logits` (N, D) and `logits` (N, num_classes).
        """
        return self._taps(x, train)

    def _taps(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        """Checks that `x` is a batch of images, casts it to `dtype`, runs `_forward`."""
        check_image_batch(x, type(self).__name__)
        return self._forward(x.astype(self.dtype), train)

    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        """The network on a checked (N, H, W, C) batch of `dtype`: its named taps."""
        raise NotImplementedError

    @property
    def _kw(self) -> dict[str, Any]:
        """dtype keyword arguments for submodules."""
        return {"dtype": self.dtype, "param_dtype": self.param_dtype}


class AuxClassifier(Classifier):
    """A `Classifier` with auxiliary heads (GoogLeNet, Inception-v3): taps `aux1`, `aux2`, ...
    when `variant.aux_logits`, which `__call__` returns beside the logits in train mode."""

    def aux_count(self) -> int:
        """Number of auxiliary heads when `variant.aux_logits`."""
        raise NotImplementedError

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array | tuple[jax.Array, tuple]:
        """Classifies a batch.

        Args:
            x: images, (N, H, W, C), any channel count.
            train: batch statistics and dropout (True) or running statistics (False).

        Returns:
            Logits (N, num_classes); in train mode with `aux_logits`, `(logits, (aux1, ...))`,
            one (N, num_classes) array per auxiliary head.
        """
        taps = self._taps(x, train)
        if train and self.variant.aux_logits:
            return taps["logits"], tuple(taps[f"aux{i + 1}"] for i in range(self.aux_count()))
        return taps["logits"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One registered architecture, as its family lists it (`MODELS`).

    Attributes:
        name: canonical name (torchvision / timm spelling).
        family: family name; `jaxcnn.weights.convert` dispatches on it.
        module: the linen Module class.
        variant: the frozen dataclass describing the variant.
        resolution: native input resolution (side of a square image).
        min_image_size: smallest input side the network accepts.
        paper: the paper (and table) the variant comes from.
        notes: how it departs from the paper, where it does.
        reference_key: key of its row in `jaxcnn.reference` (the vendored reference table), None
            where the table has no row (its figures are then in `reference/supplement.json`).
    """

    name: str
    family: str
    module: type[nn.Module]
    variant: Any
    resolution: int
    min_image_size: int
    paper: str
    notes: str = ""
    reference_key: str | None = None


# He et al. 2015, Table 1 (18-152 layers) and He et al. 2016 ("Identity Mappings"), Table 5 (200):
# depth -> (block, blocks per stage), shared by the post- and pre-activation ResNets.
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}


class ResNetBlock(Module):
    """Base of the residual blocks of the ResNet-like families: `planes` base channels, the
    stride of the block's first (strided) convolution, and the network's variant."""

    planes: int
    strides: int
    variant: Any


@dataclasses.dataclass(frozen=True)
class ResNetVariant:
    """One ResNet variant, as data (post-activation `resnet.ResNet`, pre-activation
    `resnet_v2.PreActResNet`).

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

    def bottleneck_width(self, planes: int) -> int:
        """Channels of a bottleneck's 3x3 convolution."""
        return int(planes * (self.width_per_group / 64.0)) * self.groups

    def block_strides(self, strides: int) -> tuple[int, int]:
        """(stride of the first 1x1, stride of the 3x3) of a bottleneck block."""
        return (strides, 1) if self.stride_in_1x1 else (1, strides)
