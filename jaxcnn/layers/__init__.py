"""Small building blocks shared by the model families."""

from jaxcnn.layers.conv import ConvBN, conv_kernel_init, torch_dense, torch_linear_init

__all__ = ["ConvBN", "conv_kernel_init", "torch_dense", "torch_linear_init"]
