"""Pictures: grids of tiles (shared by the neighbour pictures), PNG output, first-layer filters.

The first layer's filters: the kernels of the first convolution as a grid of small images, like the lecture's
picture of AlexNet's 64 first-layer filters (torchvision's `alexnet`: 64 x 3 x 11 x 11). Each filter
is min-max normalised on its own (over all its input channels together, so colours keep their
balance) and upscaled with nearest neighbour so that an 11x11 kernel is visible; 3 input channels
are shown as RGB, 1 as grey, any other count as the grey of the channel mean. The grid is
ceil(sqrt(F)) filters wide (F filters: 8 x 8 for AlexNet).

"First convolution" is the first convolution the network applies, found in its traced program: the
kernel operand of the first `conv_general_dilated` of the eval-mode forward pass, followed back to
the parameter it is read from (the order of the parameter tree is no guide: JAX sorts dict keys, so
ResNet's `stage1_block1` comes before its `stem`, and GoogLeNet's auxiliary head `aux1` before
`conv1`).

The command `python -m jaxcnn.visualize filters` draws them for a trained run or a fresh random
initialisation.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxcnn import rundir

GAP = 2  # pixels between (and around) the tiles of a grid
BACKGROUND = (255, 255, 255)
MIN_FILTER_SIDE = 48  # kernels are upscaled by an integer factor to at least this side
# Operations that carry a parameter to the convolution unchanged in shape and layout (a dtype cast
# under mixed precision; copies).
_PASS_THROUGH = ("convert_element_type", "copy", "copy_p")


# ---------------------------------------------------------------------------------------------------
# Grids of tiles, shared with `jaxcnn.analysis.neighbors`.


def with_border(tile: np.ndarray, color: Sequence[int], width: int) -> np.ndarray:
    """An RGB uint8 tile (H, W, 3) framed by `width` pixels of `color`."""
    h, w, _ = tile.shape
    out = np.empty((h + 2 * width, w + 2 * width, 3), np.uint8)
    out[...] = np.asarray(color, np.uint8)
    out[width : width + h, width : width + w] = tile
    return out


def tile_grid(
    tiles: Sequence[np.ndarray],
    ncols: int,
    *,
    gap: int = GAP,
    background: Sequence[int] = BACKGROUND,
    extra_gap_after_col: dict[int, int] | None = None,
) -> np.ndarray:
    """Lays equal-size RGB tiles out row by row, `gap` pixels between them and around the grid.

    Args:
        tiles: uint8 (h, w, 3) each, all the same shape.
        ncols: tiles per row; the last row may be incomplete (background).
        gap: pixels between and around the tiles.
        background: colour of the gaps.
        extra_gap_after_col: column -> additional pixels after it.

    Returns:
        uint8 (rows * h + (rows + 1) * gap, ncols * w + (ncols + 1) * gap + extra, 3).
    """
    if not tiles:
        raise ValueError("no tiles")
    h, w, _ = tiles[0].shape
    extra = extra_gap_after_col or {}
    nrows = math.ceil(len(tiles) / ncols)
    x0 = [gap + c * (w + gap) + sum(v for col, v in extra.items() if col < c) for c in range(ncols)]
    width = x0[-1] + w + gap + sum(v for col, v in extra.items() if col >= ncols - 1)
    height = nrows * h + (nrows + 1) * gap
    out = np.empty((height, width, 3), np.uint8)
    out[...] = np.asarray(background, np.uint8)
    for i, tile in enumerate(tiles):
        if tile.shape != (h, w, 3):
            raise ValueError(f"tile {i} has shape {tile.shape}, expected {(h, w, 3)}")
        r, c = divmod(i, ncols)
        y = gap + r * (h + gap)
        out[y : y + h, x0[c] : x0[c] + w] = tile
    return out


def save_png(path: rundir.PathLike, image: np.ndarray) -> None:
    """Writes an uint8 (H, W, 3) or (H, W) image as a PNG, atomically (never half-written)."""
    from PIL import Image

    with rundir.atomic_path(path) as tmp, tmp.open("wb") as f:
        Image.fromarray(np.ascontiguousarray(image)).save(f, format="PNG")


# ---------------------------------------------------------------------------------------------------
# The first convolution.


def first_conv_kernel(
    model: Any, variables: dict[str, Any], image_size: int, channels: int
) -> tuple[str, np.ndarray]:
    """The kernel of the first convolution `model` applies, as (out, in, kh, kw).

    Traces the eval-mode forward pass on one (image_size, image_size, channels) image (no compute),
    takes the first `conv_general_dilated`, and follows its kernel operand back, through dtype
    casts, to the parameter it reads; that parameter's value in `variables` is returned,
    transposed from the convolution's own kernel layout (its dimension numbers) to (O, I, kh, kw).

    Args:
        model: a jaxcnn classifier (any linen module taking `(x, train=...)`).
        variables: its variables (`params`, optionally `batch_stats`).
        image_size / channels: an input the network accepts.

    Returns:
        (the parameter's path, e.g. "params/stem/conv/kernel", float32 (O, I, kh, kw)).

    Raises:
        ValueError: the network has no convolution, or its first kernel is computed rather than a
            parameter (e.g. weight standardisation).
    """
    import jax

    from jaxcnn.analysis import cost

    jaxpr, shapes, _ = cost.trace_forward(model, image_size, channels)
    eqns, inputs, _ = cost.flatten_program(jaxpr)
    first = next((e for e in eqns if e.primitive == "conv_general_dilated"), None)
    if first is None:
        raise ValueError(f"{type(model).__name__} applies no convolution")
    producer = {o: e for e in eqns for o in e.outputs}
    var = first.inputs[1]
    while var in producer and producer[var].primitive in _PASS_THROUGH:
        var = producer[var].inputs[0]
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    position = {v: i for i, v in enumerate(inputs)}
    if var not in position or position[var] >= len(leaves):
        op = producer[var].primitive if var in producer else "?"
        raise ValueError(
            f"the first convolution ({first.name_stack}) uses a computed kernel (made by {op}), not "
            "a parameter"
        )
    keys = [k.key for k in leaves[position[var]][0]]
    value: Any = variables
    for key in keys:
        value = value[key]
    kernel = np.asarray(value, np.float32)
    rhs_spec = first.params["dimension_numbers"].rhs_spec  # (out, in, spatial...) axes
    return "/".join(map(str, keys)), np.transpose(kernel, rhs_spec)


def filter_scale(kernel_side: int) -> int:
    """The integer upscaling factor of a kernel of this side (to >= MIN_FILTER_SIDE pixels)."""
    return max(1, math.ceil(MIN_FILTER_SIDE / kernel_side))


def grid_columns(n: int) -> int:
    """Tiles per row of a grid of n filters: ceil(sqrt(n)) (8 for 64)."""
    return max(1, math.ceil(math.sqrt(n)))


def filter_images(kernel_oihw: np.ndarray, scale: int | None = None) -> np.ndarray:
    """Each filter as an RGB uint8 image (O, kh * s, kw * s, 3), min-max normalised per filter.

    3 input channels are RGB, any other count the grey of their mean (1: the channel itself).
    """
    k = np.asarray(kernel_oihw, np.float32)
    if k.ndim != 4:
        raise ValueError(f"a 2-D convolution kernel (O, I, kh, kw) is needed, got {k.shape}")
    k = np.transpose(k, (0, 2, 3, 1))  # (O, kh, kw, I)
    if k.shape[-1] != 3:
        k = k.mean(axis=-1, keepdims=True)
    lo = k.min(axis=(1, 2, 3), keepdims=True)
    span = k.max(axis=(1, 2, 3), keepdims=True) - lo
    # A constant filter (span 0) is shown as mid-grey rather than divided by zero.
    k = np.where(span > 0, (k - lo) / np.where(span > 0, span, 1.0), 0.5)
    if k.shape[-1] == 1:
        k = np.repeat(k, 3, axis=-1)
    s = scale or filter_scale(max(k.shape[1:3]))
    k = np.repeat(np.repeat(k, s, axis=1), s, axis=2)
    return np.round(k * 255).astype(np.uint8)


def filter_grid(kernel_oihw: np.ndarray, scale: int | None = None) -> np.ndarray:
    """The picture of a first layer: `filter_images` on a grid `grid_columns(O)` wide.

    Returns:
        uint8 (rows * (kh * s) + (rows + 1) * GAP, cols * (kw * s) + (cols + 1) * GAP, 3).
    """
    images = filter_images(kernel_oihw, scale)
    return tile_grid(list(images), ncols=grid_columns(len(images)))
