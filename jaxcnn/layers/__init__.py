"""Small building blocks shared by the model families."""

from jaxcnn.layers.conv import (
    ConvBN,
    batch_norm,
    conv2d,
    conv_kernel_init,
    torch_dense,
    torch_linear_init,
)

__all__ = [
    "ConvBN",
    "batch_norm",
    "conv2d",
    "conv_kernel_init",
    "torch_dense",
    "torch_linear_init",
]
