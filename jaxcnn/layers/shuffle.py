"""Channel shuffle (Zhang et al. 2018, ShuffleNet, Sec. 3.1)."""

import jax


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """Interleaves the channels of `groups` groups so the next grouped conv mixes them.

    Channel `i * (C / groups) + j` moves to `j * groups + i`, as PyTorch's reshape-transpose-reshape
    on NCHW does.

    Args:
        x: (N, H, W, C) with C divisible by `groups`.
        groups: number of channel groups.
    """
    n, h, w, c = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels do not split into {groups} groups")
    return x.reshape(n, h, w, groups, c // groups).swapaxes(3, 4).reshape(n, h, w, c)
