"""ShuffleNet v1 (Zhang et al. 2018, "ShuffleNet: An Extremely Efficient Convolutional Neural Network
for Mobile Devices", Table 1), in pytorchcv's layout (`shufflenet_g{g}_w{...}`).

A 3x3/2 conv + BN + ReLU stem and a 3x3/2 max pool; three stages of ShuffleNet units (4, 8, 4) whose
first unit has stride 2; global average pool; a linear classifier. A unit (Fig. 2 (b), (c)) is
1x1 group conv (g groups) + BN + ReLU -> channel shuffle -> 3x3 depthwise conv + BN (stride 1 or 2,
no ReLU) -> 1x1 group conv + BN, then
- stride 1: ReLU(x + branch);
- stride 2: ReLU(concat(branch, avg_pool_3x3/2(x))): the branch produces `out - in` channels so the
  concatenation has `out`, and the shortcut average pool counts its zero padding (PyTorch's
  `AvgPool2d` default), as pytorchcv does.
The bottleneck width is a quarter of the stage's output width. As the paper says (Sec. 3.3), the
first pointwise conv of stage 2 is not grouped: its input has only 24 channels.

Widths: Table 1's output channels for g = 1, 2, 3, 4, 8 (144 / 200 / 240 / 272 / 384 at stage 2,
doubling per stage), times the scale factor s ("ShuffleNet s x"), truncated to an integer (pytorchcv);
the stem is `int(24 * s)` unless the variant fixes it. `shufflenet_v1_g3_x1_5` keeps a 24-channel
stem, as the authors' released code (megvii ShuffleNet-Series) does: with it the count of
multiply-adds is the paper's 292M (Table 5); `int(24 * 1.5) = 36` would give 300M.

Parameter tree: `stem/{conv,bn}`, `stage{s}_unit{u}/{pw1,dw,pw2}/{conv,bn}` for s = 2..4, `head`.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.layers import ConvBN, torch_dense
from jaxcnn.layers.shuffle import channel_shuffle
from jaxcnn.models.base import Classifier, ModelSpec

# Zhang et al. 2018, Table 1: output channels of stages 2, 3, 4 at 1x, per number of groups g.
STAGE_CHANNELS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}


@dataclasses.dataclass(frozen=True)
class ShuffleNetV1Variant:
    """A ShuffleNet v1 network as data.

    Attributes:
        groups: g, the groups of the 1x1 convolutions (Table 1: 1, 2, 3, 4 or 8).
        width_mult: the scale factor s of "ShuffleNet s x" (e.g. 0.5, 1.0, 1.5, 2.0).
        stem: stem channels; None for `int(24 * width_mult)`.
        repeats: units per stage (Table 1: 4, 8, 4).
        num_classes: classifier outputs.
    """

    groups: int = 3
    width_mult: float = 1.0
    stem: int | None = None
    repeats: tuple[int, int, int] = (4, 8, 4)
    num_classes: int = 1000

    def widths(self) -> tuple[int, tuple[int, ...]]:
        """(stem channels, output channels of stages 2..4); raises ValueError where the groups do
        not divide a layer's channels."""
        if self.groups not in STAGE_CHANNELS:
            raise ValueError(
                f"ShuffleNet v1: groups={self.groups} is not in Table 1; "
                f"valid: {sorted(STAGE_CHANNELS)}"
            )
        stem = self.stem if self.stem is not None else int(24 * self.width_mult)
        stages = tuple(int(c * self.width_mult) for c in STAGE_CHANNELS[self.groups])
        g, c_in = self.groups, stem
        for s, c in enumerate(stages, start=2):
            # Grouped layers: pw1 in (except stage 2's first unit) / out (c // 4), pw2 in (c // 4)
            # / out (c - c_in in the first unit, c after).
            sizes = {"bottleneck": c // 4, "first unit's branch": c - c_in, "output": c}
            if s > 2:
                sizes["input"] = c_in
            bad = {k: v for k, v in sizes.items() if v <= 0 or v % g}
            if bad:
                raise ValueError(
                    f"ShuffleNet v1 (groups={g}, width_mult={self.width_mult}, stem={stem}): "
                    f"stage {s} channels {bad} do not split into {g} groups; pick another "
                    f"width_mult or stem"
                )
            c_in = c
        return stem, stages


VARIANTS = {
    "shufflenet_v1_g1": ShuffleNetV1Variant(groups=1),
    "shufflenet_v1_g2": ShuffleNetV1Variant(groups=2),
    "shufflenet_v1_g3": ShuffleNetV1Variant(groups=3),
    "shufflenet_v1_g4": ShuffleNetV1Variant(groups=4),
    "shufflenet_v1_g8": ShuffleNetV1Variant(groups=8),
    # The scaled g = 3 networks of Table 5 (names as mindcv's).
    "shufflenet_v1_g3_x0_5": ShuffleNetV1Variant(groups=3, width_mult=0.5),
    "shufflenet_v1_g3_x1_5": ShuffleNetV1Variant(groups=3, width_mult=1.5, stem=24),
    "shufflenet_v1_g3_x2_0": ShuffleNetV1Variant(groups=3, width_mult=2.0),
}
_PAPER = "Zhang et al. 2018, ShuffleNet, Tables 1, 2 and 5"
_NOTES = (
    "pytorchcv layout (shuffle before the depthwise conv, concat(branch, shortcut)); "
    "other widths via create_model(..., width_mult=s)"
)


class ShuffleUnit(nn.Module):
    """One ShuffleNet unit (Fig. 2 (b) for stride 1, (c) for stride 2).

    Attributes:
        features: output channels of the unit.
        groups: groups of the 1x1 convolutions and of the channel shuffle.
        strides: 1, or 2 for the first unit of a stage.
        group_pw1: whether the first 1x1 conv is grouped (not in stage 2's first unit).
    """

    features: int
    groups: int
    strides: int
    group_pw1: bool = True
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        g, s, c = self.groups, self.strides, x.shape[-1]
        mid = self.features // 4
        branch = self.features - c if s == 2 else self.features
        y = ConvBN(mid, 1, 1, groups=g if self.group_pw1 else 1, name="pw1", **kw)(x, train=train)
        y = channel_shuffle(y, g)
        y = ConvBN(mid, 3, s, groups=mid, act=None, name="dw", **kw)(y, train=train)
        y = ConvBN(branch, 1, 1, groups=g, act=None, name="pw2", **kw)(y, train=train)
        if s == 1:
            return nn.relu(x + y)
        shortcut = nn.avg_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)), count_include_pad=True)
        return nn.relu(jnp.concatenate([y, shortcut], axis=-1))


class ShuffleNetV1(Classifier):
    """ShuffleNet v1, NHWC (`variant`: `ShuffleNetV1Variant`).

    Taps of `features`: `stem`, (N, H/4, W/4, 24 * s) after the max pool; `stage2`..`stage4`,
    (N, H/8, W/8, C2) .. (N, H/32, W/32, C4) with C2..C4 the variant's stage widths; `pre_logits`,
    (N, C4) after global pooling; `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        stem, stages = v.widths()
        taps = {}
        x = ConvBN(stem, 3, 2, name="stem", **kw)(x, train=train)
        taps["stem"] = x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for s, (repeats, c) in enumerate(zip(v.repeats, stages, strict=True), start=2):
            for u in range(1, repeats + 1):
                x = ShuffleUnit(
                    c,
                    v.groups,
                    2 if u == 1 else 1,
                    group_pw1=not (s == 2 and u == 1),
                    name=f"stage{s}_unit{u}",
                    **kw,
                )(x, train=train)
            taps[f"stage{s}"] = x
        taps["pre_logits"] = x = jnp.mean(x, axis=(1, 2))
        taps["logits"] = torch_dense(self.num_classes, x.shape[-1], "head", **kw)(x)
        return taps


# Only shufflenet_v1_g3 has a row in the reference table; the figures of the others (pytorchcv's
# ShuffleNet with the same channels, counted) are in reference/supplement.json.
_STEM_NOTE = "; 24-channel stem as the authors' code (int(24 * 1.5) = 36 in pytorchcv)"
MODELS = tuple(
    ModelSpec(
        name,
        "shufflenet_v1",
        ShuffleNetV1,
        v,
        224,
        32,
        _PAPER,
        _NOTES + (_STEM_NOTE if v.stem is not None else ""),
        "shufflenet_v1_g3" if name == "shufflenet_v1_g3" else None,
    )
    for name, v in VARIANTS.items()
)
