"""PNASNet-5 (Liu et al. 2018, "Progressive Neural Architecture Search").

The same cell machinery as NASNet-A (`nasnet.Cell`, `nasnet.NASNet`), with the cell found by the
progressive search (Liu et al., Fig. 1): five combinations, all concatenated, one cell type for
normal and reduction cells (a reduction cell is the same cell with stride 2 on its inputs, and a
strided identity becomes ReLU-1x1 conv/2-BN). Macro structure (TF `pnasnet.py`, ImageNet): a 3x3/2
VALID conv, two stem cells, then `num_cells` cells of which those at 1/3 and 2/3 of the depth
reduce (cells 4 and 8 of 12); every cell reads the two previous cell outputs (no
`skip_reduction_layer_input`). Padding as timm's `pnasnet5large` (TF "SAME").

`pnasnet5large` is PNASNet-5 Large (N=4, F=216: 4320 channels before pooling), timm's
`pnasnet5large` layout; the mobile network of the paper (N=3, F=54) has no reference count and is
not registered. Not implemented: the auxiliary head and drop-path of the paper's training recipe.

Parameter tree (timm names): `conv0/{conv,bn}` (timm `conv_0`), `cell_stem_{0,1}`, `cell_{i}`,
`head` (timm `last_linear`); cells as in `nasnet`.
"""

import dataclasses

from jaxcnn.models.base import ModelSpec
from jaxcnn.models.nasnet import ID, MAX3, SEP3, SEP5, SEP7, CellNetworkVariant, CellSpec, NASNet

# Liu et al. 2018, Fig. 1 (TF pnasnet.PNasNetNormalCell: operations and hidden-state indices).
PNASNET_5 = CellSpec(
    combinations=(
        ((SEP5, "prev"), (MAX3, "prev")),
        ((SEP7, "cur"), (MAX3, "cur")),
        ((SEP5, "cur"), (SEP3, "cur")),
        ((SEP3, "c2"), (MAX3, "cur")),
        ((SEP3, "prev"), (ID, "cur")),
    ),
    concat=("c0", "c1", "c2", "c3", "c4"),
)


@dataclasses.dataclass(frozen=True)
class PNASNetVariant(CellNetworkVariant):
    """PNASNet-5 (Liu et al. 2018, Table 5; TF `pnasnet.large_imagenet_config`).

    Attributes:
        num_cells: cells after the stem cells; those at 1/3 and 2/3 of them are reduction cells.
        penultimate_filters: channels before pooling = 20 x `filters` (5 concatenated states,
            filters x4 by the last stage).
        stem_filters: channels of the 3x3 stem conv.
        dropout: before the classifier (TF `dense_dropout_keep_prob` 0.5; timm defaults to 0).
        num_classes: classifier outputs.
        normal_cell, reduction_cell: the searched cell (one and the same for PNASNet).
        skip_reduction_layer_input, avg_pool_counts_padding: as `nasnet.NASNetVariant`; False
            (PNASNet reads the previous two cells; it has no average pools).
    """

    num_cells: int = 12
    penultimate_filters: int = 4320
    stem_filters: int = 96
    dropout: float = 0.5
    num_classes: int = 1000
    normal_cell: CellSpec = PNASNET_5
    reduction_cell: CellSpec = PNASNET_5
    skip_reduction_layer_input: bool = False
    avg_pool_counts_padding: bool = False

    def cell_count(self) -> int:
        return self.num_cells

    def reduction_indices(self) -> tuple[int, int]:
        """TF `nasnet_utils.calc_reduction_layers` with two reductions: cells 4 and 8 of 12."""
        return tuple(int(k / 3 * self.num_cells) for k in (1, 2))

    def body(self) -> tuple[tuple[str, bool, int], ...]:
        """(name, is_reduction, filters) of each cell after the two stem cells, in order."""
        cells, width = [], self.filters
        for i in range(self.num_cells):
            reduction = i in self.reduction_indices()
            width *= 2 if reduction else 1
            cells.append((f"cell_{i}", reduction, width))
        return tuple(cells)


class PNASNet(NASNet):
    """PNASNet-5, NHWC (`variant`: `PNASNetVariant`); taps as `nasnet.NASNet`: `conv0`,
    `cell_stem_0`, `stage1` (cell_3), `stage2` (cell_7), `stage3` (cell_11, width 4320),
    `pre_logits`, `logits`. Smallest input side 32."""


VARIANTS = {"pnasnet5large": PNASNetVariant()}
MODELS = (
    ModelSpec(
        "pnasnet5large",
        "pnasnet",
        PNASNet,
        VARIANTS["pnasnet5large"],
        331,
        32,
        "Liu et al. 2018, PNASNet-5 Large (N=4, F=216), Table 5",
        "timm pnasnet5large layout and padding; paper 86.1M; no auxiliary head, no drop-path",
        "pnasnet5_large",
    ),
)
