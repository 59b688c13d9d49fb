"""Padding arithmetic: PyTorch's symmetric padding and TensorFlow's "SAME"."""

import math

Pads = tuple[tuple[int, int], tuple[int, int]]


def pair(v: int | tuple[int, int]) -> tuple[int, int]:
    """`v` as a (height, width) pair."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one spatial axis: ceil(size / stride) outputs,
    the odd pixel of padding after (bottom / right). Symmetric k // 2 for stride 1 and odd k."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_pads(
    shape: tuple[int, ...], kernel: int | tuple[int, int], stride: int | tuple[int, int]
) -> Pads:
    """TF "SAME" padding of both spatial axes of an NHWC `shape`, as `nn.Conv` / pools take it."""
    (kh, kw), (sh, sw) = pair(kernel), pair(stride)
    return same_padding(shape[1], kh, sh), same_padding(shape[2], kw, sw)


def torch_pads(kernel: int | tuple[int, int]) -> Pads:
    """PyTorch's symmetric `k // 2` padding on each side of each axis.

    Explicit rather than `"SAME"`: with stride 2 and an even input, XLA's SAME pads only on the
    bottom/right, which shifts every window by one pixel against torchvision and breaks weight
    compatibility.
    """
    kh, kw = pair(kernel)
    return (kh // 2, kh // 2), (kw // 2, kw // 2)
