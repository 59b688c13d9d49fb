"""NASNet-A (Zoph et al. 2018, "Learning Transferable Architectures for Scalable Image Recognition").

A NASNet is a stack of two searched cell types. Each cell reads the outputs of the two previous
cells (`cur` = the latest, `prev` = the one before), brings both to the cell's `filters` channels
(ReLU-1x1 conv-BN, or a factorized reduction when `prev` is at twice the resolution), then forms 5
combinations, each the sum of two operations applied to `cur`, `prev` or an earlier combination,
and concatenates the unused ones. The cells are data (`CellSpec`: a list of (op, input) pairs,
each op an `Op(kind, size)`); `Cell` interprets them. Operations, as in the TF reference code
(`nasnet_utils.py`):

- `SEP3` / `SEP5` / `SEP7` (separable, K = 3, 5, 7): ReLU -> KxK depthwise (the cell's stride)
  -> 1x1 -> BN -> ReLU -> KxK depthwise -> 1x1 -> BN; the middle width is the output width.
- `AVG3` / `MAX3`: 3x3 pooling, then 1x1 conv + BN only where the channel count differs.
- `ID`: identity, or ReLU -> 1x1 conv (the cell's stride) -> BN where the stride or the channel
  count requires it.

Operations on `cur` / `prev` take the cell's stride, those on earlier combinations stride 1.
Padding is TensorFlow's "SAME" (asymmetric where needed, computed from the input size) as in timm's
`pad_type='same'` ports; stride-1 average pools exclude the padding from their count.

Macro structure (Zoph et al., Fig. 2, ImageNet): a 3x3/2 VALID conv (`conv0`), two reduction
"stem" cells (`cell_stem_0`: `prev` is the raw conv0 output; `cell_stem_1`) with 1/4 and 1/2 of
`filters`, then N normal cells, a reduction cell, N normal cells, a reduction cell, N normal cells
(filters doubling at each reduction), ReLU, global average pooling, dropout, linear head.
`nasnet_a_large` is NASNet-A 6@4032 (timm `nasnetalarge`), `nasnet_a_mobile` NASNet-A 4@1056
(pytorchcv `nasnet_4a1056`, Cadene `nasnetamobile`); "N@P": N cells per stage, P channels
before pooling (P = 24 x filters).

Not implemented: the auxiliary head and ScheduledDropPath of the paper's training recipe.

Parameter tree (timm / Cadene names): `conv0/{conv,bn}`, `cell_stem_{0,1}`, `cell_{i}`,
`reduction_cell_{k}`, `head`; inside a cell `conv_1x1/{conv,bn}`, `conv_prev_1x1/{conv,bn}` or
`conv_prev_1x1/{path_1,path_2,final_path_bn}` (factorized reduction), and one module per non-trivial
operation, `comb_iter_{j}_{left,right}`: `separable_{1,2}/{depthwise_conv2d,pointwise_conv2d}` +
`bn_sep_{1,2}`, or `conv` + `bn`.
"""

import dataclasses
import enum
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, batch_norm, conv2d, depthwise_kernel_init, torch_dense
from jaxcnn.layers.padding import same_padding, same_pads
from jaxcnn.layers.pooling import avg_pool_same, max_pool_same
from jaxcnn.models.base import Classifier, ModelSpec, Module

__all__ = [
    "AVG3",
    "ID",
    "MAX3",
    "NASNET_A_NORMAL",
    "NASNET_A_REDUCTION",
    "SEP3",
    "SEP5",
    "SEP7",
    "VARIANTS",
    "Cell",
    "CellNetworkVariant",
    "CellOp",
    "CellSpec",
    "FactorizedReduction",
    "NASNet",
    "NASNetVariant",
    "Op",
    "OpKind",
    "avg_pool_same",
    "max_pool_same",
    "same_padding",
]

# TF-slim's BatchNorm epsilon, kept by every PyTorch port of these networks (momentum: PyTorch's 0.1).
BN_EPS = 1e-3


class OpKind(enum.Enum):
    """The kinds of operation of the searched cells (see the module docstring)."""

    SEPARABLE = "sep"
    AVG_POOL = "avg"
    MAX_POOL = "max"
    IDENTITY = "id"


class Op(NamedTuple):
    """One operation of a cell: its kind and kernel size (1 for the identity)."""

    kind: OpKind
    size: int = 1


SEP3, SEP5, SEP7 = (Op(OpKind.SEPARABLE, k) for k in (3, 5, 7))
AVG3 = Op(OpKind.AVG_POOL, 3)
MAX3 = Op(OpKind.MAX_POOL, 3)
ID = Op(OpKind.IDENTITY)


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """One searched cell as data.

    Attributes:
        combinations: per combination, its two (operation, input) pairs (left, right); operations
            `SEP3`, `SEP5`, `SEP7`, `AVG3`, `MAX3`, `ID` (`Op` values); inputs `cur`, `prev`, or
            `c{j}` (an earlier combination).
        concat: the hidden states concatenated into the cell output, in order.
    """

    combinations: tuple[tuple[tuple[Op, str], tuple[Op, str]], ...]
    concat: tuple[str, ...]


# Zoph et al. 2018, Fig. 4 (left), in the TF reference order (nasnet_utils.NasNetANormalCell).
NASNET_A_NORMAL = CellSpec(
    combinations=(
        ((SEP5, "cur"), (SEP3, "prev")),
        ((SEP5, "prev"), (SEP3, "prev")),
        ((AVG3, "cur"), (ID, "prev")),
        ((AVG3, "prev"), (AVG3, "prev")),
        ((SEP3, "cur"), (ID, "cur")),
    ),
    concat=("prev", "c0", "c1", "c2", "c3", "c4"),
)
# Zoph et al. 2018, Fig. 4 (right) (nasnet_utils.NasNetAReductionCell).
NASNET_A_REDUCTION = CellSpec(
    combinations=(
        ((SEP5, "cur"), (SEP7, "prev")),
        ((MAX3, "cur"), (SEP7, "prev")),
        ((AVG3, "cur"), (SEP5, "prev")),
        ((ID, "c1"), (AVG3, "c0")),
        ((SEP3, "c0"), (MAX3, "cur")),
    ),
    concat=("c1", "c2", "c3", "c4"),
)


def _relu_conv_bn(features: int, name: str, **kw) -> ConvBN:
    """ReLU -> 1x1 conv -> BN (`conv`, `bn`): brings a cell input to the cell's width."""
    opts = {"act_first": True, "padding": "valid", "bn_epsilon": BN_EPS}
    return ConvBN(features, 1, name=name, **opts, **kw)


class FactorizedReduction(Module):
    """Halves the resolution without losing pixels: ReLU, then two 1x1 convs of `features // 2`
    channels on the even pixels and on the odd ones (shifted by one, zero past the border),
    concatenated, BN (TF `factorized_reduction`; timm's ZeroPad2d((-1, 1, -1, 1)) path)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw, half = self._kw, self.features // 2
        x = nn.relu(x)
        even = x[:, ::2, ::2]
        odd = jnp.pad(x[:, 1:, 1:], ((0, 0), (0, 1), (0, 1), (0, 0)))[:, ::2, ::2]
        a = conv2d(half, 1, name="path_1", **kw)(even)
        b = conv2d(half, 1, name="path_2", **kw)(odd)
        return batch_norm(train, name="final_path_bn", epsilon=BN_EPS, **kw)(
            jnp.concatenate([a, b], axis=-1)
        )


class _Separable(Module):
    """KxK depthwise conv (SAME) then 1x1 pointwise conv, no activation in between."""

    features: int
    kernel: int
    strides: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c, k, s = x.shape[-1], self.kernel, self.strides
        x = conv2d(
            c,
            k,
            s,
            groups=c,
            padding=same_pads(x.shape, k, s),
            kernel_init=depthwise_kernel_init,
            name="depthwise_conv2d",
            **self._kw,
        )(x)
        return conv2d(self.features, 1, name="pointwise_conv2d", **self._kw)(x)


class CellOp(Module):
    """One operation of a cell (see the module docstring).

    Attributes:
        op: the operation (`SEP3`, ..., `ID`).
        features: the cell's filters (the operation's output channels).
        strides: 2 for an operation on a cell input of a reduction cell, else 1.
        avg_pool_counts_padding: see `NASNetVariant`.
    """

    op: Op
    features: int
    strides: int
    avg_pool_counts_padding: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw = self._kw
        (kind, k), s, f = self.op, self.strides, self.features
        if kind is OpKind.SEPARABLE:
            for i, stride in ((1, s), (2, 1)):
                x = nn.relu(x)
                x = _Separable(f, k, stride, name=f"separable_{i}", **kw)(x)
                x = batch_norm(train, name=f"bn_sep_{i}", epsilon=BN_EPS, **kw)(x)
            return x
        if kind is OpKind.IDENTITY:
            if s == 1 and x.shape[-1] == f:
                return x
            # TF: a strided or re-widened identity is ReLU -> 1x1 conv (stride s) -> BN.
            return self._project(nn.relu(x), s, train)
        if kind is OpKind.AVG_POOL:
            x = avg_pool_same(x, k, s, count_padding=self.avg_pool_counts_padding and s > 1)
        elif kind is OpKind.MAX_POOL:
            x = max_pool_same(x, k, s)
        else:
            raise ValueError(f"unknown cell operation {self.op!r}")
        if x.shape[-1] != f:  # TF: a pooled input of the wrong width gets a 1x1 conv + BN
            x = self._project(x, 1, train)
        return x

    def _project(self, x: jax.Array, strides: int, train: bool) -> jax.Array:
        """1x1 conv (TF "SAME") -> BN as this operation's own `conv` / `bn` (called inside
        `__call__`: the op's parameter tree has no ConvBN level)."""
        pads = same_pads(x.shape, 1, strides)
        x = conv2d(self.features, 1, strides, padding=pads, name="conv", **self._kw)(x)
        return batch_norm(train, name="bn", epsilon=BN_EPS, **self._kw)(x)


class Cell(Module):
    """A NASNet / PNASNet cell interpreting a `CellSpec`.

    Attributes:
        spec: the cell's operations and concatenation.
        features: the cell's filters (width of each concatenated state).
        strides: 2 for a reduction cell.
        prev_mode: how `prev` is brought to `features` channels: "conv" (ReLU-1x1 conv-BN),
            "reduce" (factorized reduction: `prev` is at twice the resolution of `cur`) or "raw"
            (used as is: the first stem cell, whose `prev` is the conv0 output).
        avg_pool_counts_padding: see `NASNetVariant`.
    """

    spec: CellSpec
    features: int
    strides: int
    prev_mode: str
    avg_pool_counts_padding: bool = False

    @nn.compact
    def __call__(self, cur: jax.Array, prev: jax.Array, *, train: bool) -> jax.Array:
        """Args: cur, prev: (N, H, W, C) and (N, H or 2H, W or 2W, C'). Returns: (N, H / strides,
        W / strides, features * len(spec.concat))."""
        kw, f = self._kw, self.features
        states = {"cur": _relu_conv_bn(f, "conv_1x1", **kw)(cur, train=train)}
        if self.prev_mode == "reduce":
            prev = FactorizedReduction(f, name="conv_prev_1x1", **kw)(prev, train=train)
        elif self.prev_mode == "conv":
            prev = _relu_conv_bn(f, "conv_prev_1x1", **kw)(prev, train=train)
        states["prev"] = prev
        for j, pair in enumerate(self.spec.combinations):
            left, right = (
                CellOp(
                    op,
                    f,
                    self.strides if src in ("cur", "prev") else 1,
                    self.avg_pool_counts_padding,
                    name=f"comb_iter_{j}_{side}",
                    **kw,
                )(states[src], train=train)
                for side, (op, src) in zip(("left", "right"), pair, strict=True)
            )
            states[f"c{j}"] = left + right
        return jnp.concatenate([states[k] for k in self.spec.concat], axis=-1)


class CellNetworkVariant:
    """What the NASNet and PNASNet variants share (a mixin of their dataclasses): the first
    stage's width from `penultimate_filters`, and its check at construction."""

    def cell_count(self) -> int:
        """Cells per stage (NASNet) or in all (PNASNet)."""
        raise NotImplementedError

    def __post_init__(self):
        _check_filters(self.penultimate_filters, len(self.normal_cell.concat), self.cell_count())

    @property
    def filters(self) -> int:
        """The first stage's cell width (stem cells: 1/4 and 1/2 of it)."""
        return self.penultimate_filters // (4 * len(self.normal_cell.concat))


@dataclasses.dataclass(frozen=True)
class NASNetVariant(CellNetworkVariant):
    """NASNet-A "N @ P" (Zoph et al. 2018, Tables 2 and 3; TF `nasnet.py` configs).

    Attributes:
        cells_per_stage: N, normal cells per stage (3 stages, a reduction cell between stages).
        penultimate_filters: P, channels before pooling = 24 x `filters` (6 concatenated states,
            filters x4 by the last stage).
        stem_filters: channels of the 3x3 stem conv (32 x the TF `stem_multiplier`).
        skip_reduction_layer_input: the cell after a reduction cell reads, as its `prev`, the
            reduction cell's own `prev` instead of the last cell of the previous stage (TF
            `skip_reduction_layer_input`: 1 for the large, 0 for the mobile network).
        avg_pool_counts_padding: strided 3x3 average pools divide by 9 including the SAME padding
            (timm's `AvgPool2dSame`, needed for parity with timm's `nasnetalarge`); False: count
            only real pixels, as TF and pytorchcv / Cadene's mobile port do.
        dropout: before the classifier (TF `dense_dropout_keep_prob` 0.5; timm defaults to 0).
        num_classes: classifier outputs.
        normal_cell, reduction_cell: the searched cells.
    """

    cells_per_stage: int = 6
    penultimate_filters: int = 4032
    stem_filters: int = 96
    skip_reduction_layer_input: bool = True
    avg_pool_counts_padding: bool = True
    dropout: float = 0.5
    num_classes: int = 1000
    normal_cell: CellSpec = NASNET_A_NORMAL
    reduction_cell: CellSpec = NASNET_A_REDUCTION

    def cell_count(self) -> int:
        return self.cells_per_stage

    def body(self) -> tuple[tuple[str, bool, int], ...]:
        """(name, is_reduction, filters) of each cell after the two stem cells, in order."""
        n, cells = self.cells_per_stage, []
        for stage in range(3):
            width = self.filters * 2**stage
            if stage:
                cells.append((f"reduction_cell_{stage - 1}", True, width))
            cells += [(f"cell_{stage * n + j}", False, width) for j in range(n)]
        return tuple(cells)


def _check_filters(penultimate: int, states: int, cells: int) -> None:
    """Cell widths must be multiples of 4: the stem cells use 1/4 of the first stage's width, and
    factorized reductions split a width in two halves."""
    filters, rem = divmod(penultimate, 4 * states)
    if rem or filters % 4:
        raise ValueError(
            f"penultimate_filters={penultimate} must be {4 * states} x a multiple of 4 (the first "
            f"stage's cell width, which the stem cells divide by 4); got {penultimate / (4 * states):g}"
        )
    if cells < 1:
        raise ValueError(f"the network needs at least one cell per stage, got {cells}")


class NASNet(Classifier):
    """NASNet-A and (through its variant) PNASNet-5, NHWC (`variant`: `NASNetVariant` or
    `pnasnet.PNASNetVariant`).

    Any input channel count works; the smallest input side is 32 (total stride 32, with a VALID
    stem conv).

    Taps of `features` (timm's feature taps): `conv0`, (N, (H-1)//2, (W-1)//2, stem_filters), the
    stem conv + BN; `cell_stem_0`, ReLU of the first stem cell, stride 4; `stage1`..`stage3`, ReLU
    of the last cell at strides 8, 16 and 32 (`stage3`, width P, feeds the pooling);
    `pre_logits`, (N, P); `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        cell = lambda spec, f, s, mode, name: Cell(  # noqa: E731
            spec, f, s, mode, v.avg_pool_counts_padding, name=name, **kw
        )
        taps = {}
        # 3x3 stride-2 VALID conv -> BN, no activation (each cell starts with its own ReLU).
        taps["conv0"] = x = ConvBN(
            v.stem_filters, 3, 2, act=None, padding="valid", bn_epsilon=BN_EPS, name="conv0", **kw
        )(x, train=train)
        f = v.filters
        s0 = cell(v.reduction_cell, f // 4, 2, "raw", "cell_stem_0")(x, x, train=train)
        taps["cell_stem_0"] = nn.relu(s0)
        s1 = cell(v.reduction_cell, f // 2, 2, "reduce", "cell_stem_1")(s0, x, train=train)
        # Hidden states with their resolution level (stride-2 steps after conv0): a cell whose
        # `prev` is one level finer than `cur` reduces it (TF decides this from the shapes; by
        # levels the parameter tree does not depend on the input size).
        prev, cur, before_reduction, stage = (s0, 1), (s1, 2), None, 1
        for name, reduction, width in v.body():
            if reduction:
                taps[f"stage{stage}"] = nn.relu(cur[0])
                stage += 1
            p = prev
            if before_reduction is not None and v.skip_reduction_layer_input:
                p = before_reduction
            mode = "reduce" if p[1] < cur[1] else "conv"
            spec = v.reduction_cell if reduction else v.normal_cell
            out = cell(spec, width, 2 if reduction else 1, mode, name)(cur[0], p[0], train=train)
            before_reduction = p if reduction else None
            prev, cur = cur, (out, cur[1] + reduction)
        taps[f"stage{stage}"] = x = nn.relu(cur[0])
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(v.dropout, deterministic=not train)(x)
        taps["logits"] = torch_dense(self.num_classes, x.shape[-1], "head", **kw)(x)
        return taps


VARIANTS = {
    "nasnet_a_large": NASNetVariant(),
    "nasnet_a_mobile": NASNetVariant(
        cells_per_stage=4,
        penultimate_filters=1056,
        stem_filters=32,
        skip_reduction_layer_input=False,
        avg_pool_counts_padding=False,
    ),
}
MODELS = (
    ModelSpec(
        "nasnet_a_large",
        "nasnet",
        NASNet,
        VARIANTS["nasnet_a_large"],
        331,
        32,
        "Zoph et al. 2018, NASNet-A 6@4032, Table 2",
        "timm nasnetalarge layout and padding (its strided average pools count the SAME padding, "
        "TF's do not); paper 88.9M counts TF's 1001-way head; no auxiliary head, no drop-path",
        "nasnet_a_large",
    ),
    # The reference row's 568,234,858 MACs (pytorchcv) include an output row and column that
    # pytorchcv / Cadene compute and crop away in their strided cells ("extra padding"); without
    # them (TF, this network) 563,638,816, the paper's 564M: reference/supplement.json.
    ModelSpec(
        "nasnet_a_mobile",
        "nasnet",
        NASNet,
        VARIANTS["nasnet_a_mobile"],
        224,
        32,
        "Zoph et al. 2018, NASNet-A 4@1056, Table 3",
        "TF SAME padding (pytorchcv nasnet_4a1056 / Cadene nasnetamobile agree at 224 and 32 px); "
        "MACs without the row/column pytorchcv computes and crops (its count: 568,234,858); "
        "no auxiliary head, no drop-path",
        "nasnet_a_mobile",
    ),
)
