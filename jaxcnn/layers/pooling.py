"""Pooling layers with PyTorch's exact semantics (needed for weight-compatible classifiers)."""

import math

import jax
import jax.numpy as jnp


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
