"""Convolution followed by BatchNorm and an optional activation: the zoo's one conv vocabulary."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers.init import conv_kernel_init, torch_linear_init
from jaxcnn.layers.padding import Pads, pair, same_pads, torch_pads

# "torch" (symmetric k // 2), "valid", "tf_same" (TensorFlow SAME: asymmetric, from the input
# size), p or (p_rows, p_cols) pixels on each side, or explicit ((top, bottom), (left, right)).
Padding = str | int | tuple[int, int] | Pads


def conv_pads(
    padding: Padding,
    kernel: int | tuple[int, int],
    strides: int | tuple[int, int] = 1,
    shape: tuple[int, ...] | None = None,
) -> Pads:
    """Explicit ((top, bottom), (left, right)) padding of a `Padding` spec.

    Args:
        padding: see `Padding`.
        kernel: kernel side or (height, width).
        strides: stride or (rows, columns) (for "tf_same").
        shape: the NHWC input shape ("tf_same" depends on it).
    """
    if padding == "torch":
        return torch_pads(kernel)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "tf_same":
        if shape is None:
            raise ValueError('"tf_same" padding depends on the input size: pass its shape')
        return same_pads(shape, kernel, strides)
    if isinstance(padding, str):
        raise ValueError(f"unknown padding {padding!r}; valid: torch, valid, tf_same or pixels")
    if isinstance(padding, int) or isinstance(padding[0], int):
        ph, pw = pair(padding)
        return (ph, ph), (pw, pw)
    return tuple(padding[0]), tuple(padding[1])


def conv2d(
    features: int,
    kernel_size: int | tuple[int, int],
    strides: int | tuple[int, int] = 1,
    *,
    groups: int = 1,
    padding: Padding = "torch",
    name: str,
    **kw: Any,
) -> nn.Conv:
    """A convolution, by default bias-free with PyTorch's symmetric `k // 2` padding and He init.

    `padding`: see `conv_pads` ("tf_same" needs the input: compute it with `conv_pads` first).
    `kw`: dtype / param_dtype, and `use_bias`, `kernel_init`, `bias_init` to change the defaults.
    """
    kw = {"use_bias": False, "kernel_init": conv_kernel_init, **kw}
    return nn.Conv(
        features,
        pair(kernel_size),
        strides=pair(strides),
        padding=conv_pads(padding, kernel_size),
        feature_group_count=groups,
        name=name,
        **kw,
    )


def batch_norm(
    train: bool, *, name: str, epsilon: float = 1e-5, momentum: float = 0.1, **kw: Any
) -> nn.BatchNorm:
    """BatchNorm with PyTorch's defaults and convention: `momentum` is the weight of the new batch
    statistic (0.1; TF ports use 0.01), epsilon 1e-5 (TF ports: 1e-3).

    `train`: normalise with (and update) the batch statistics; else use the running ones.
    `kw`: dtype / param_dtype / scale_init.
    """
    # Flax's momentum is the weight of the old running statistic.
    return nn.BatchNorm(
        use_running_average=not train, momentum=1.0 - momentum, epsilon=epsilon, name=name, **kw
    )


class ConvBN(nn.Module):
    """`conv` -> `bn` -> `act`, the conv + BatchNorm of every family.

    Attributes:
        features: output channels.
        kernel_size: kernel side, or (height, width) (Inception's 1x7 / 7x1).
        strides: stride, or (rows, columns).
        groups: `feature_group_count` of the convolution (ResNeXt cardinality, depthwise convs).
        act: activation applied after BatchNorm, or None.
        bn_epsilon: BatchNorm epsilon (PyTorch: 1e-5; TF ports 1e-3).
        bn_momentum: BatchNorm momentum, PyTorch's convention (0.1; TF ports 0.01).
        scale_init: init of the BatchNorm scale (zeros for a zero-initialised residual branch).
        dtype: computation dtype.
        param_dtype: parameter dtype.
        padding: "torch" (symmetric k // 2), "valid", "tf_same" (TensorFlow SAME, asymmetric where
            the size needs it), or pixels (see `conv_pads`).
        use_bias: a bias on the convolution (VGG; the paper's GoogLeNet, which has no BN).
        norm: BatchNorm after the convolution; False: conv -> act only.
        act_first: apply `act` to the input instead of after BatchNorm (NASNet's ReLU-conv-BN).
        kernel_init: init of the convolution kernel (default He normal, fan_out).
        bias_init: init of the convolution bias.
        conv_name, bn_name: names of the two submodules in the parameter tree.
    """

    features: int
    kernel_size: int | tuple[int, int] = 3
    strides: int | tuple[int, int] = 1
    groups: int = 1
    act: Callable[[jax.Array], jax.Array] | None = nn.relu
    bn_epsilon: float = 1e-5
    bn_momentum: float = 0.1
    scale_init: Callable = nn.initializers.ones
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    padding: Padding = "torch"
    use_bias: bool = False
    norm: bool = True
    act_first: bool = False
    kernel_init: Callable = conv_kernel_init
    bias_init: Callable = nn.initializers.zeros
    conv_name: str = "conv"
    bn_name: str = "bn"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Args: x: (N, H, W, C_in). Returns: (N, H', W', features)."""
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        act = self.act or (lambda y: y)
        if self.act_first:
            x = act(x)
        x = conv2d(
            self.features,
            self.kernel_size,
            self.strides,
            groups=self.groups,
            padding=conv_pads(self.padding, self.kernel_size, self.strides, x.shape),
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            name=self.conv_name,
            **kw,
        )(x)
        if self.norm:
            x = batch_norm(
                train,
                name=self.bn_name,
                epsilon=self.bn_epsilon,
                momentum=self.bn_momentum,
                scale_init=self.scale_init,
                **kw,
            )(x)
        return x if self.act_first else act(x)


def bn_relu(x: jax.Array, train: bool, name: str, **kw: Any) -> jax.Array:
    """BatchNorm `name` (PyTorch's defaults) then ReLU, the pre-activation of the DenseNet /
    pre-activation ResNet / WRN convolutions. Call it inside a compact method: the BatchNorm is a
    child of that module, so the parameter tree keeps the flat `norm1`, `conv1`, ... layout.
    `kw`: dtype / param_dtype."""
    return nn.relu(batch_norm(train, name=name, **kw)(x))


def torch_dense(features: int, fan_in: int, name: str, **kw: Any) -> nn.Dense:
    """`nn.Dense` initialised like PyTorch's `nn.Linear` (see `torch_linear_init`)."""
    kernel_init, bias_init = torch_linear_init(fan_in)
    return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, name=name, **kw)
