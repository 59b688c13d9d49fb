"""Small building blocks shared by the model families."""

from jaxcnn.layers.conv import (
    ConvBN,
    batch_norm,
    conv2d,
    conv_kernel_init,
    torch_dense,
    torch_linear_init,
)
from jaxcnn.layers.drop_path import DropPath
from jaxcnn.layers.se import SqueezeExcite

__all__ = [
    "ConvBN",
    "DropPath",
    "SqueezeExcite",
    "batch_norm",
    "conv2d",
    "conv_kernel_init",
    "torch_dense",
    "torch_linear_init",
]
