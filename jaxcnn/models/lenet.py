"""LeNet-5 (LeCun et al. 1998, "Gradient-Based Learning Applied to Document Recognition", Sec. II.B).

The common modern form, as the reference figures count it (61,706 parameters for 10 classes): C1 6@5x5,
S2 2x2 pooling, C3 16@5x5 connected to all six S2 maps (the paper connects each C3 map to a subset,
Table I), S4 pooling, C5 120 (a 5x5 convolution on a 5x5 map, i.e. fully connected), F6 84, and a
linear output layer in place of the paper's Euclidean RBF units. Activation: tanh (the paper's
squashing function, without its 1.7159 scale); pooling: max (the paper's S layers are trainable
average pools). The input is 32x32 as in the paper (it pads 28x28 MNIST to 32x32), any channel count.

Parameter tree: `c1`, `c3`, `c5`, `f6`, `head`.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models.base import Classifier, ModelSpec


@dataclasses.dataclass(frozen=True)
class LeNetVariant:
    """LeNet-5 widths: C1 and C3 feature maps, C5 and F6 units."""

    c1: int = 6
    c3: int = 16
    c5: int = 120
    f6: int = 84
    num_classes: int = 10


VARIANTS = {"lenet5": LeNetVariant()}


class LeNet5(Classifier):
    """LeNet-5 on 32x32 inputs, NHWC (`variant`: widths).

    Taps of `features`: `c1` (N, 14, 14, 6) and `c3` (N, 5, 5, 16) after pooling, `pre_logits`
    (N, 84) (F6), `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        del train  # no dropout nor BatchNorm
        if x.shape[1:3] != (32, 32):
            raise ValueError(
                f"LeNet5 takes 32x32 inputs (the paper pads 28x28 digits to 32x32); got "
                f"{x.shape[1]}x{x.shape[2]}: resize or pad to 32 (--image_size=32)"
            )
        v, kw = self.variant, self._kw
        taps = {}
        x = jnp.tanh(nn.Conv(v.c1, (5, 5), padding="VALID", name="c1", **kw)(x))  # 28x28
        taps["c1"] = x = nn.max_pool(x, (2, 2), strides=(2, 2))  # 14x14
        x = jnp.tanh(nn.Conv(v.c3, (5, 5), padding="VALID", name="c3", **kw)(x))  # 10x10
        taps["c3"] = x = nn.max_pool(x, (2, 2), strides=(2, 2))  # 5x5
        x = jnp.tanh(nn.Conv(v.c5, (5, 5), padding="VALID", name="c5", **kw)(x))  # 1x1
        x = x.reshape(x.shape[0], -1)
        taps["pre_logits"] = x = jnp.tanh(nn.Dense(v.f6, name="f6", **kw)(x))
        taps["logits"] = nn.Dense(self.num_classes, name="head", **kw)(x)
        return taps


MODELS = (
    ModelSpec(
        "lenet5",
        "lenet",
        LeNet5,
        VARIANTS["lenet5"],
        32,
        32,
        "LeCun et al. 1998, Gradient-Based Learning Applied to Document Recognition, Sec. II.B",
        "full C3 connectivity, max pooling, linear output instead of RBF units (the paper: ~60K "
        "trainable parameters)",
        reference_key="lenet5",
    ),
)
