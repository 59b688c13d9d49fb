"""Pooling layers with PyTorch's exact semantics (needed for weight-compatible classifiers)."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.layers.padding import same_pads


def adaptive_avg_pool(x: jax.Array, output_size: int) -> jax.Array:
    """`torch.nn.AdaptiveAvgPool2d(output_size)` for NHWC input.

    Output cell i averages input rows floor(i*H/out) .. ceil((i+1)*H/out) - 1 (and likewise for
    columns), so it is exact at any input size, including inputs smaller than the output (cells
    then repeat input pixels, as torchvision's VGG / AlexNet do on small images).

    Args:
        x: (N, H, W, C).
        output_size: side of the square output.

    Returns:
        (N, output_size, output_size, C).
    """
    n, h, w, c = x.shape
    if h == output_size and w == output_size:
        return x
    if h % output_size == 0 and w % output_size == 0:  # regular windows: one reshape
        return x.reshape(n, output_size, h // output_size, output_size, w // output_size, c).mean(
            axis=(2, 4)
        )

    def bounds(size: int) -> list[tuple[int, int]]:
        return [
            (math.floor(i * size / output_size), math.ceil((i + 1) * size / output_size))
            for i in range(output_size)
        ]

    rows = [x[:, a:b].mean(axis=1) for a, b in bounds(h)]  # each (N, W, C)
    y = jnp.stack(rows, axis=1)  # (N, out, W, C)
    cols = [y[:, :, a:b].mean(axis=2) for a, b in bounds(w)]
    return jnp.stack(cols, axis=2)


def flatten_nchw(x: jax.Array) -> jax.Array:
    """Flattens (N, H, W, C) in PyTorch's (C, H, W) order, so that the first fully connected
    layer's weights are those of the PyTorch model without any permutation."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def pool_out_size(size: int, kernel: int, stride: int, pad: int = 0, ceil: bool = False) -> int:
    """Output side of PyTorch's `MaxPool2d` / Caffe's pooling (ceil mode: a last partial window
    is kept if it starts inside the input or its left padding)."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def max_pool(
    x: jax.Array, kernel: int, stride: int, pad: int = 0, *, ceil: bool = False
) -> jax.Array:
    """`torch.nn.MaxPool2d(kernel, stride, pad, ceil_mode=ceil)` on NHWC input.

    Ceil mode pads the bottom / right with -inf so that a last, partial window is pooled too
    (Caffe always pools this way; torchvision's GoogLeNet and the Caffe ports of SENet ask for it).
    """
    pads = []
    for size in x.shape[1:3]:
        out = pool_out_size(size, kernel, stride, pad, ceil)
        if out < 1:
            raise ValueError(
                f"max pool {kernel}x{kernel}/{stride}: a {x.shape[1]}x{x.shape[2]} feature map is "
                "too small (use a larger input image)"
            )
        pads.append((pad, max(pad, (out - 1) * stride + kernel - size - pad)))
    return nn.max_pool(x, (kernel, kernel), (stride, stride), padding=tuple(pads))


def avg_pool_same(x: jax.Array, kernel: int, stride: int, count_padding: bool) -> jax.Array:
    """Average pooling with TF "SAME" padding, NHWC.

    `count_padding=False` divides by the number of real pixels in each window (TF; PyTorch's
    `count_include_pad=False`). `count_padding=True` divides by kernel**2, padded zeros included:
    timm's `AvgPool2dSame` pads explicitly before pooling, so its strided pools count the padding.
    """
    (top, bottom), (left, right) = same_pads(x.shape, kernel, stride)
    pads = ((0, 0), (top, bottom), (left, right), (0, 0))
    # A numpy init value keeps reduce_window a differentiable sum (a traced one would not be).
    zero = np.zeros((), x.dtype)
    summed = jax.lax.reduce_window(
        x, zero, jax.lax.add, (1, kernel, kernel, 1), (1, stride, stride, 1), pads
    )
    if count_padding:
        return summed / (kernel * kernel)

    def real_pixels(size: int, before: int, out: int) -> np.ndarray:  # per window, one axis
        start = np.arange(out) * stride - before
        return np.clip(start + kernel, 0, size) - np.clip(start, 0, size)

    counts = np.outer(
        real_pixels(x.shape[1], top, summed.shape[1]),
        real_pixels(x.shape[2], left, summed.shape[2]),
    )
    return summed / counts[None, :, :, None].astype(x.dtype)


def max_pool_same(x: jax.Array, kernel: int, stride: int) -> jax.Array:
    """Max pooling with TF "SAME" padding (padded pixels never win), NHWC."""
    return nn.max_pool(x, (kernel, kernel), (stride, stride), same_pads(x.shape, kernel, stride))
