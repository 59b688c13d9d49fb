"""Small building blocks shared by the model families: the zoo's one layer vocabulary."""

from jaxcnn.layers.channels import make_divisible
from jaxcnn.layers.conv import ConvBN, batch_norm, bn_relu, conv2d, conv_pads, torch_dense
from jaxcnn.layers.drop_path import DropPath
from jaxcnn.layers.init import (
    conv_kernel_init,
    depthwise_kernel_init,
    normal_init,
    torch_linear_init,
    uniform_init,
    xavier_uniform_init,
)
from jaxcnn.layers.se import SqueezeExcite

__all__ = [
    "ConvBN",
    "DropPath",
    "SqueezeExcite",
    "batch_norm",
    "bn_relu",
    "conv2d",
    "conv_kernel_init",
    "conv_pads",
    "depthwise_kernel_init",
    "make_divisible",
    "normal_init",
    "torch_dense",
    "torch_linear_init",
    "uniform_init",
    "xavier_uniform_init",
]
