"""GoogLeNet (Inception v1): the paper's network and torchvision's weight-compatible layout.

Paper: Szegedy et al. 2014, "Going Deeper with Convolutions" (arXiv 1409.4842). Table 1 gives the
layers and the widths of the nine Inception modules (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5,
pool proj); Fig. 3 adds local response normalisation after the first max pool and after the 3x3
convolution of the stem; Sec. 5 describes the two auxiliary classifiers on top of (4a) and (4d):
a 5x5/3 average pool, a 1x1 convolution with 128 filters, a 1024-unit fully connected layer,
dropout 0.7 and a linear classifier, whose losses are added with weight 0.3 during training only.

Two builds, as data (`GoogLeNetVariant`):
- `googlenet`: the paper. Convolutions with biases and no BatchNorm, 5x5 convolutions in the 5x5
  branch, LRN (size 5, alpha 1e-4, beta 0.75, k 1: BVLC's Caffe model), a 3x3/2 max pool before
  the (5x) modules, dropout 0.4, Caffe's initialisation (Xavier weights, conv biases 0.2).
- `googlenet_tv`: torchvision's `googlenet` (ported from a BN-Inception-v1), for its weights: BatchNorm
  (epsilon 1e-3) after every bias-free convolution, no LRN, a **3x3** convolution in the "5x5" branch
  (torchvision's documented "known bug", pytorch/vision#906, kept for weight compatibility), a 2x2/2
  max pool before (5a), dropout 0.2, torchvision's init (normal, std 0.01). torchvision's
  `transform_input` (default False without pretrained weights) is not applied: inputs go in as given.

Both use ceil-mode max pooling (Caffe's, and torchvision's `ceil_mode=True`), so 224 px gives the
paper's 112-56-28-14-7 grid. Auxiliary heads: at the paper's 224 px their pool is exactly the
paper's 5x5/3 (14x14 -> 4x4); `aux_pool="adaptive"` (torchvision) always averages to 4x4, and the
paper build falls back to that at other sizes so that the 4*4*128 -> 1024 layer fits any input.

With `aux_logits=True`, `model.apply(v, x, train=True)` returns `(logits, (aux1, aux2))`; the loss is
`CE(logits) + aux_weight * (CE(aux1) + CE(aux2))` (`aux_weight` 0.3, Sec. 5). In eval mode it
returns the logits only. The heads run in both modes so that `init(..., train=False)` creates them.

Parameter tree: `conv1`, `conv2`, `conv3` (stem), `inception{3a..5b}/{conv1x1, conv3x3_reduce,
conv3x3, conv5x5_reduce, conv5x5, pool_proj}`, each `{conv[, bn]}`; `aux{1,2}/{conv/{conv[,bn]},
fc, head}`; `head`.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, normal_init, torch_linear_init, xavier_uniform_init
from jaxcnn.layers.lrn import LocalResponseNorm
from jaxcnn.layers.pooling import adaptive_avg_pool, flatten_nchw, max_pool, pool_out_size
from jaxcnn.models.base import AuxClassifier, ModelSpec, Module

Init = Literal["caffe", "torchvision"]


def _conv_inits(init: Init) -> tuple[Callable, Callable]:
    """(kernel_init, bias_init) of the convolutions."""
    if init == "caffe":
        # BVLC's GoogLeNet prototxt: "xavier" filler (Caffe's: uniform, variance 1 / fan_in),
        # biases 0.2.
        return xavier_uniform_init, nn.initializers.constant(0.2)
    # torchvision: trunc_normal_(std=0.01, a=-2, b=2), truncated at +-200 std, i.e. a normal.
    return normal_init(0.01), nn.initializers.zeros


def _conv(
    features: int, kernel: int, strides: int = 1, *, batch_norm: bool, init: Init, **kw: Any
) -> ConvBN:
    """A convolution of the build: ReLU after BatchNorm (torchvision's bias-free `BasicConv2d`) or
    after a bias (the paper); PyTorch's symmetric `k // 2` padding. `kw`: bn_epsilon, name,
    dtypes."""
    kernel_init, bias_init = _conv_inits(init)
    return ConvBN(
        features,
        kernel,
        strides,
        padding=kernel // 2,
        use_bias=not batch_norm,
        norm=batch_norm,
        kernel_init=kernel_init,
        bias_init=bias_init,
        **kw,
    )


def _dense(features: int, fan_in: int, init: Init, name: str, **kw: Any) -> nn.Dense:
    """A linear layer initialised as the build's reference implementation does."""
    if init == "caffe":
        kernel_init, bias_init = xavier_uniform_init, nn.initializers.zeros
    else:  # torchvision: weights normal(0.01), biases nn.Linear's default
        kernel_init, bias_init = normal_init(0.01), torch_linear_init(fan_in)[1]
    return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, name=name, **kw)


class InceptionSpec(NamedTuple):
    """Widths of one Inception module: the columns of Szegedy et al. 2014, Table 1."""

    conv1x1: int
    conv3x3_reduce: int
    conv3x3: int
    conv5x5_reduce: int
    conv5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        """Channels of the concatenated output."""
        return self.conv1x1 + self.conv3x3 + self.conv5x5 + self.pool_proj

    def scaled(self, width: float) -> "InceptionSpec":
        return InceptionSpec(*(_scale(c, width) for c in self))


def _scale(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class InceptionModule(Module):
    """The Inception module with dimension reductions (Szegedy et al. 2014, Fig. 2b).

    Four parallel branches, concatenated along channels: a 1x1 conv; a 1x1 reduction then a 3x3
    conv; a 1x1 reduction then a 5x5 conv; a 3x3/1 max pool then a 1x1 projection. Every conv is
    followed by ReLU (and BatchNorm when `batch_norm`).

    Attributes:
        spec: the branch widths (`InceptionSpec`, a row of Table 1).
        kernel_5x5: kernel of the "5x5" branch (5 in the paper; 3 in torchvision's GoogLeNet).
        batch_norm: BatchNorm after each convolution (torchvision) instead of biases (paper).
        bn_epsilon: BatchNorm epsilon.
        init: "caffe" (the paper's reference model) or "torchvision".
        dtype, param_dtype: computation and parameter dtypes.
    """

    spec: InceptionSpec
    kernel_5x5: int = 5
    batch_norm: bool = False
    bn_epsilon: float = 1e-3
    init: Init = "caffe"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Args: x: (N, H, W, C). Returns: (N, H, W, spec.out_channels)."""
        s = self.spec
        opts = {"batch_norm": self.batch_norm, "init": self.init, "bn_epsilon": self.bn_epsilon}

        def conv(features: int, kernel: int, name: str) -> ConvBN:
            return _conv(features, kernel, name=name, **opts, **self._kw)

        b1 = conv(s.conv1x1, 1, "conv1x1")(x, train=train)
        b2 = conv(s.conv3x3_reduce, 1, "conv3x3_reduce")(x, train=train)
        b2 = conv(s.conv3x3, 3, "conv3x3")(b2, train=train)
        b3 = conv(s.conv5x5_reduce, 1, "conv5x5_reduce")(x, train=train)
        b3 = conv(s.conv5x5, self.kernel_5x5, "conv5x5")(b3, train=train)
        b4 = conv(s.pool_proj, 1, "pool_proj")(max_pool(x, 3, 1, 1), train=train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


# Szegedy et al. 2014, Table 1: (3a, 3b), (4a .. 4e), (5a, 5b).
TABLE1: tuple[tuple[InceptionSpec, ...], ...] = (
    (
        InceptionSpec(64, 96, 128, 16, 32, 32),
        InceptionSpec(128, 128, 192, 32, 96, 64),
    ),
    (
        InceptionSpec(192, 96, 208, 16, 48, 64),
        InceptionSpec(160, 112, 224, 24, 64, 64),
        InceptionSpec(128, 128, 256, 24, 64, 64),
        InceptionSpec(112, 144, 288, 32, 64, 64),
        InceptionSpec(256, 160, 320, 32, 128, 128),
    ),
    (
        InceptionSpec(256, 160, 320, 32, 128, 128),
        InceptionSpec(384, 192, 384, 48, 128, 128),
    ),
)


@dataclasses.dataclass(frozen=True)
class GoogLeNetVariant:
    """One GoogLeNet build, as data.

    Attributes:
        stem: widths of conv1 (7x7/2), conv2 (1x1 reduction) and conv3 (3x3).
        stages: Inception module widths of stages 3, 4 and 5 (Table 1); a max pool 3x3/2 precedes
            stage 4 and a `pool4_kernel`/2 one stage 5.
        kernel_5x5: kernel of the "5x5" branch (paper 5; torchvision 3).
        pool4_kernel: max pool before stage 5 (paper 3x3/2; torchvision 2x2/2).
        batch_norm: BatchNorm after every conv, no conv biases (torchvision).
        bn_epsilon: BatchNorm epsilon (torchvision's 1e-3).
        lrn: LRN after the first max pool and after conv3 (paper, Fig. 3).
        init: "caffe" (paper's reference model) or "torchvision" weight initialisation.
        aux_logits: build the auxiliary classifiers (training-time heads of Sec. 5).
        aux_weight: weight of each auxiliary loss (0.3, Sec. 5).
        aux_after: the modules whose outputs feed an auxiliary head ("4a", "4d").
        aux_pool: "paper" (5x5/3 average pool; adaptive 4x4 where that does not give 4x4) or
            "adaptive" (always adaptive 4x4, torchvision).
        aux_channels: the auxiliary 1x1 conv's filters (128).
        aux_hidden: the auxiliary fully connected layer's units (1024).
        aux_dropout: dropout of the auxiliary heads (0.7).
        dropout: dropout before the main classifier (paper 0.4; torchvision 0.2).
        width_mult: multiplier of every channel count (1.0: the published network; smaller for tests).
        num_classes: classes of the native head.
    """

    stem: tuple[int, int, int] = (64, 64, 192)
    stages: tuple[tuple[InceptionSpec, ...], ...] = TABLE1
    kernel_5x5: int = 5
    pool4_kernel: int = 3
    batch_norm: bool = False
    bn_epsilon: float = 1e-3
    lrn: bool = True
    init: Init = "caffe"
    aux_logits: bool = True
    aux_weight: float = 0.3
    aux_after: tuple[str, ...] = ("4a", "4d")
    aux_pool: Literal["paper", "adaptive"] = "paper"
    aux_channels: int = 128
    aux_hidden: int = 1024
    aux_dropout: float = 0.7
    dropout: float = 0.4
    width_mult: float = 1.0
    num_classes: int = 1000


VARIANTS: dict[str, GoogLeNetVariant] = {
    "googlenet": GoogLeNetVariant(),
    # torchvision.models.googlenet: BN-Inception-v1 port (see the module docstring).
    "googlenet_tv": GoogLeNetVariant(
        kernel_5x5=3,
        pool4_kernel=2,
        batch_norm=True,
        lrn=False,
        init="torchvision",
        aux_pool="adaptive",
        dropout=0.2,
    ),
}


class InceptionAux(Module):
    """Auxiliary classifier (Sec. 5): 4x4 average pool, 1x1 conv, FC + ReLU, dropout, linear.

    Attributes:
        variant: the network's `GoogLeNetVariant`.
        num_classes: classifier outputs.
        dtype, param_dtype: computation and parameter dtypes.
    """

    variant: GoogLeNetVariant
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Args: x: (N, H, W, C), H = W = 14 at 224 px. Returns: (N, num_classes)."""
        v, kw = self.variant, self._kw
        if v.aux_pool == "paper" and pool_out_size(x.shape[1], 5, 3) == 4 == pool_out_size(
            x.shape[2], 5, 3
        ):
            x = nn.avg_pool(x, (5, 5), (3, 3))
        x = adaptive_avg_pool(x, 4)
        x = _conv(
            _scale(v.aux_channels, v.width_mult),
            1,
            batch_norm=v.batch_norm,
            init=v.init,
            bn_epsilon=v.bn_epsilon,
            name="conv",
            **kw,
        )(x, train=train)
        x = flatten_nchw(x)  # torchvision flattens (C, H, W)
        hidden = _scale(v.aux_hidden, v.width_mult)
        x = nn.relu(_dense(hidden, x.shape[-1], v.init, "fc", **kw)(x))
        x = nn.Dropout(v.aux_dropout, deterministic=not train)(x)
        return _dense(self.num_classes, hidden, v.init, "head", **kw)(x)


class GoogLeNet(AuxClassifier):
    """GoogLeNet / Inception v1, NHWC (`variant`: `VARIANTS`).

    `__call__(x, train=True)` returns `(logits, (aux1, aux2))` when `variant.aux_logits`, else logits.

    Taps of `features`: `stem`, after the second max pool, (N, H/8, W/8, 192); `inception3`,
    `inception4`, `inception5`, the outputs of (3b), (4e), (5b): (N, H/8, W/8, 480),
    (N, H/16, W/16, 832), (N, H/32, W/32, 1024) (sides rounded up); `aux1`, `aux2`, the auxiliary
    logits (N, num_classes), when `aux_logits` (in both modes; dropout only in train mode);
    `pre_logits`, the global average pool, (N, 1024); `logits`, (N, num_classes). Channel counts
    are those of `width_mult=1`.
    """

    def aux_count(self) -> int:
        return len(self.variant.aux_after)

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        opts = {"batch_norm": v.batch_norm, "init": v.init, "bn_epsilon": v.bn_epsilon}

        def conv(features: int, kernel: int, stride: int, name: str) -> ConvBN:
            return _conv(_scale(features, v.width_mult), kernel, stride, name=name, **opts, **kw)

        x = conv(v.stem[0], 7, 2, "conv1")(x, train=train)
        x = max_pool(x, 3, 2, ceil=True)
        if v.lrn:  # Caffe's LRN: k = 1
            x = LocalResponseNorm(5, 1e-4, 0.75, 1.0)(x)
        x = conv(v.stem[1], 1, 1, "conv2")(x, train=train)
        x = conv(v.stem[2], 3, 1, "conv3")(x, train=train)
        if v.lrn:
            x = LocalResponseNorm(5, 1e-4, 0.75, 1.0)(x)
        x = max_pool(x, 3, 2, ceil=True)
        taps["stem"] = x
        aux_count = 0
        for s, specs in enumerate(v.stages, start=3):
            if s == 4:
                x = max_pool(x, 3, 2, ceil=True)
            elif s == 5:
                x = max_pool(x, v.pool4_kernel, 2, ceil=True)
            for i, spec in enumerate(specs):
                tag = f"{s}{'abcdefgh'[i]}"
                x = InceptionModule(
                    spec.scaled(v.width_mult),
                    kernel_5x5=v.kernel_5x5,
                    batch_norm=v.batch_norm,
                    bn_epsilon=v.bn_epsilon,
                    init=v.init,
                    name=f"inception{tag}",
                    **kw,
                )(x, train=train)
                if v.aux_logits and tag in v.aux_after:
                    aux_count += 1
                    name = f"aux{aux_count}"
                    taps[name] = InceptionAux(v, self.num_classes, name=name, **kw)(x, train=train)
            taps[f"inception{s}"] = x
        if v.aux_logits and aux_count != len(v.aux_after):
            raise ValueError(
                f"GoogLeNet: aux_after={v.aux_after} names modules the variant does not have "
                f"(its stages have {[len(specs) for specs in v.stages]} modules: 3a, 3b, 4a, ...)"
            )
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(v.dropout, deterministic=not train)(x)
        taps["logits"] = _dense(self.num_classes, x.shape[-1], v.init, "head", **kw)(x)
        return taps


_PAPER = "Szegedy et al. 2014, Going Deeper with Convolutions (arXiv 1409.4842), Table 1"

# name -> notes. Reference rows googlenet_paper_aux / googlenet_tv_aux: params with both auxiliary
# heads, MACs of the inference network (conv + linear, no auxiliary heads). Without the auxiliary
# heads (aux_logits=False): 6,998,552 and 6,624,904 parameters (rows googlenet_paper, googlenet_tv).
_NOTES = {
    "googlenet": (
        "params include both auxiliary classifiers (6,998,552 without: aux_logits=False); "
        "Table 1's ~6.8M sum and 1.5G ops understate conv1 (see reference_numbers.md); "
        "auxiliary pool is adaptive 4x4 at inputs where 5x5/3 does not give 4x4"
    ),
    "googlenet_tv": (
        "torchvision's layout: BatchNorm (eps 1e-3) and no biases, 3x3 conv in the '5x5' branch, "
        "no LRN, 2x2/2 pool before (5a), adaptive 4x4 auxiliary pool, dropout 0.2; params "
        "include both auxiliary classifiers (6,624,904 without)"
    ),
}
_REFERENCE_KEYS = {"googlenet": "googlenet_paper_aux", "googlenet_tv": "googlenet_tv_aux"}

# Smallest input side: every ceil-mode max pool must keep at least one window (`pool_out_size`).
# torchvision's build (2x2/2 pool before stage 5) accepts 15 px and up, as torchvision does; the
# paper's 3x3/2 pool there needs a 2x2 map, i.e. 31 px (tests/models/test_googlenet.py checks both).
MIN_IMAGE_SIZE = {"googlenet": 31, "googlenet_tv": 15}


MODELS = tuple(
    ModelSpec(
        name,
        "googlenet",
        GoogLeNet,
        v,
        224,
        MIN_IMAGE_SIZE[name],
        _PAPER,
        _NOTES[name],
        _REFERENCE_KEYS[name],
    )
    for name, v in VARIANTS.items()
)

__all__ = [
    "TABLE1",
    "VARIANTS",
    "GoogLeNet",
    "GoogLeNetVariant",
    "InceptionAux",
    "InceptionModule",
    "InceptionSpec",
    "max_pool",
    "pool_out_size",
]
