"""Squeeze-and-excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks", Fig. 2-3)."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers.init import conv_kernel_init, torch_linear_init


class SqueezeExcite(nn.Module):
    """Channel gating: `x * gate(fc2(act(fc1(mean_hw(x)))))`.

    The two "fully connected" layers are 1x1 convolutions with bias on the (N, 1, 1, C) pooled
    tensor, as in every PyTorch implementation (timm's SEModule, torchvision's
    SqueezeExcitation), so their kernels convert like any convolution's.

    Attributes:
        hidden: channels of the bottleneck (SENet: C // 16; MobileNetV3: make_divisible(C // 4, 8);
            EfficientNet: a quarter of the block's input channels).
        act: activation between the two layers (SENet, MobileNetV3: ReLU; EfficientNet: SiLU).
        gate: the gating function (SENet, EfficientNet: sigmoid; MobileNetV3: hard sigmoid).
        kernel_init: init of both kernels (default: He normal, fan_out, as timm's SENet and
            torchvision's MobileNetV3 / EfficientNet, which initialise them like every conv).
        bias_init: init of both biases; None: PyTorch's default, U(+-1/sqrt(fan_in)) (timm's
            SENet); torchvision's MobileNetV3 / EfficientNet start them at zero
            (`nn.initializers.zeros`).
        dtype: computation dtype.
        param_dtype: parameter dtype.

    Parameter tree: `fc1/{kernel,bias}` (1, 1, C, hidden), `fc2/{kernel,bias}` (1, 1, hidden, C).
    """

    hidden: int
    act: Callable[[jax.Array], jax.Array] = nn.relu
    gate: Callable[[jax.Array], jax.Array] = nn.sigmoid
    kernel_init: Callable = conv_kernel_init
    bias_init: Callable | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: x: (N, H, W, C). Returns: x rescaled per sample and channel, (N, H, W, C)."""
        channels = x.shape[-1]
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype, "kernel_init": self.kernel_init}
        bias1, bias2 = self.bias_init, self.bias_init
        if self.bias_init is None:
            bias1, bias2 = torch_linear_init(channels)[1], torch_linear_init(self.hidden)[1]
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = self.act(nn.Conv(self.hidden, (1, 1), bias_init=bias1, name="fc1", **kw)(s))
        s = nn.Conv(channels, (1, 1), bias_init=bias2, name="fc2", **kw)(s)
        return x * self.gate(s)
