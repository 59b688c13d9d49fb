"""ShuffleNet V2 (Ma et al. 2018, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", Table 5), torchvision's layout.

Each unit splits the channels in two (stride 1: one half passes through; stride 2: both branches see
the whole input and the width doubles), runs one branch through 1x1 -> 3x3 depthwise -> 1x1, then
concatenates and shuffles the channels (groups of 2).

Parameter tree: `stem/{conv,bn}`, `stage{s}_unit{u}/{branch1_dw,branch1_pw,branch2_pw1,branch2_dw,
branch2_pw2}/{conv,bn}` (branch1 only in the stride-2 units), `final/{conv,bn}`, `head`.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, torch_dense
from jaxcnn.layers.shuffle import channel_shuffle
from jaxcnn.models.base import Classifier, ModelSpec


@dataclasses.dataclass(frozen=True)
class ShuffleNetV2Variant:
    """Table 5: units per stage and output channels (stem, stage2..4, final conv)."""

    channels: tuple[int, int, int, int, int]
    repeats: tuple[int, int, int] = (4, 8, 4)
    num_classes: int = 1000


VARIANTS = {
    "shufflenet_v2_x0_5": ShuffleNetV2Variant((24, 48, 96, 192, 1024)),
    "shufflenet_v2_x1_0": ShuffleNetV2Variant((24, 116, 232, 464, 1024)),
    "shufflenet_v2_x1_5": ShuffleNetV2Variant((24, 176, 352, 704, 1024)),
    "shufflenet_v2_x2_0": ShuffleNetV2Variant((24, 244, 488, 976, 2048)),
}


class ShuffleUnit(nn.Module):
    """One ShuffleNet V2 unit (Fig. 3 (c) for stride 1, (d) for stride 2)."""

    features: int
    strides: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        half, s = self.features // 2, self.strides
        if s == 1:
            keep, x = jnp.split(x, 2, axis=-1)
        else:
            c = x.shape[-1]
            keep = ConvBN(c, 3, s, groups=c, act=None, name="branch1_dw", **kw)(x, train=train)
            keep = ConvBN(half, 1, 1, name="branch1_pw", **kw)(keep, train=train)
        y = ConvBN(half, 1, 1, name="branch2_pw1", **kw)(x, train=train)
        y = ConvBN(half, 3, s, groups=half, act=None, name="branch2_dw", **kw)(y, train=train)
        y = ConvBN(half, 1, 1, name="branch2_pw2", **kw)(y, train=train)
        return channel_shuffle(jnp.concatenate([keep, y], axis=-1), 2)


class ShuffleNetV2(Classifier):
    """ShuffleNet V2, NHWC (`variant`: `VARIANTS`).

    Taps of `features`: `stem`, (N, H/4, W/4, 24) after the max pool; `stage2`..`stage4`,
    (N, H/8, W/8, C2) .. (N, H/32, W/32, C4); `pre_logits`, (N, C_final) after the final 1x1 conv
    and global pooling; `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        x = ConvBN(v.channels[0], 3, 2, name="stem", **kw)(x, train=train)
        taps["stem"] = x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for s, (repeats, c) in enumerate(zip(v.repeats, v.channels[1:4], strict=True), start=2):
            for u in range(1, repeats + 1):
                x = ShuffleUnit(c, 2 if u == 1 else 1, name=f"stage{s}_unit{u}", **kw)(
                    x, train=train
                )
            taps[f"stage{s}"] = x
        x = ConvBN(v.channels[4], 1, 1, name="final", **kw)(x, train=train)
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        taps["logits"] = torch_dense(self.num_classes, x.shape[-1], "head", **kw)(x)
        return taps


MODELS = tuple(
    ModelSpec(
        name,
        "shufflenet",
        ShuffleNetV2,
        v,
        224,
        32,
        "Ma et al. 2018, ShuffleNet V2, Table 5",
        "torchvision layout",
        name,
    )
    for name, v in VARIANTS.items()
)
