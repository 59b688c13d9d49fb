"""RandAugment, AugMix and random erasing for the training pipeline, on Keras 3's preprocessing layers.

The training pipeline (`jaxcnn.data.pipeline`) applies a `Policy` on top of its crop + flip:
RandAugment or AugMix on the 0..255 image (`apply_before_normalize`), random erasing on the
normalised one (`apply_after_normalize`). The ops are Keras's (`keras.layers.RandAugment`,
`AugMix`, `RandomErasing` and the layers they hold); the config strings are timm's notation,
mapped onto Keras's settings as described below. There is no claim of parity with timm (or
torchvision): the op set, the magnitude ranges and the sampling are Keras's.

Determinism. Every example's augmentation is a function of the stateless seed the pipeline gives
it (seed, epoch, position), never of a layer's SeedGenerator state (a variable that tf.data's
parallel map would advance in whatever order it visits examples). At Keras 3.15 the layers'
`get_random_transformation(data, seed=...)` accepts an int (the same numbers for every example),
None (the layer's own stateful generator) or a `keras.random.SeedGenerator`, whose `next()` each
random draw calls; a tensor is refused. `_Draws` is a SeedGenerator without state whose n-th draw
is `stateless_fold_in(seed, n)`, so the per-example seed tensor reaches every draw; the layers'
`transform_images` are then pure functions of (image, transformation). What Keras samples
itself in the layers' own `get_random_transformation` cannot be driven that way, so this module
does that part, the same way the layer does:
- RandAugment picks its ops with its generator: here `num_ops` stateless draws of an op index, and
  each op's transformation drawn once per image (shared by slots that pick the same op), as in
  Keras's RandAugment.get_random_transformation. Keras's `transform_images` then computes all 11
  ops for each slot and keeps one (`where`); here `tf.switch_case` runs only the chosen one (the
  same numbers, checked in tests/data/test_augment.py; 4x faster at 224 x 224).
- AugMix picks each chain's ops with Python's `random` while tracing, i.e. once for the whole
  tf.data pipeline (every image gets the same op sequence), from Python's global RNG. Here: a
  stateless draw per example and slot among Keras's ops plus "none" (Keras's `None` choice), the
  Dirichlet chain weights and the Beta weight of the original from stateless gamma draws, and the
  result mixed exactly as AugMix.transform_images mixes it.
- Random erasing is Keras's RandomErasing driven through `_Draws` as it is.
Equalization: Keras 3.15 builds its histogram with a 256-step loop whenever the *global* Keras
backend is JAX, even when the layer runs on TensorFlow inside tf.data (~10x the time per image);
`_Equalization` takes TensorFlow's bincount path instead (the same numbers). The layers run on
Keras's TensorFlow backend whatever KERAS_BACKEND is; the output is bit-identical under
KERAS_BACKEND=jax and =tensorflow (tested).

RandAugment: `--config.randaugment=rand-m9-n2-mstd0.5` (timm's `--aa`).
- `mM` (0..10, default 10) -> Keras `factor = M / 10`; `nN` (default 2) -> `num_ops = N`;
  `mmaxX` -> `factor = min(M, X) / 10` (M above 10 cannot be expressed: Keras's factor is at most
  1).
- Keras draws every op's strength uniformly in [0, factor] each time it applies it. That is timm's
  `mstd101` (uniform in [0, M]); timm's default (no mstd: every op at exactly M) and `mstdS`
  (Gaussian around M) have no Keras counterpart. Keras's `factor` also takes a (min, max) range,
  but its ops read it inconsistently (contrast from [1 - min, 1 + max], solarization's addition
  from [min, 255 max], posterization from max alone), so mstd is not mapped onto a range.
- timm applies each chosen op with probability `p` (default 0.5); Keras always applies it. `inc1`
  (timm's increasing-severity op variants) has no counterpart either: Keras has one op set.
- `mstd`, `p` and `inc` are accepted, so that recipes copied from timm parse, and reported as "not
  applied" by `Policy.describe()`; `t...` (op subsets / weights) and anything else are refused.
Keras's op set (RandAugment._AUGMENT_LAYERS; the strengths for factor f, value range 0..255):
  random_shear (x and y shear in [0, f] together, one random sign), random_translation (shifts
  of [0, f] of the size, in the positive x and y directions only), random_rotation ([0, 360 f]
  degrees), random_brightness (+[0, f] x 255: brighter only), random_color_degeneration (blend
  towards grey by [0, f]), random_contrast (x [1, 1 + f]: more contrast only), random_sharpness
  (factor [0, 2 f]: below 1 blurs), random_posterization (keeps randint[1, int(8 f)) bits, 1 bit
  when int(8 f) <= 1: stronger for small f; 1..6 bits at f = 0.9), solarization (adds [0, 255 f],
  then inverts the pixels at or above a threshold in [0, 255 f]), auto_contrast, equalization.
  Geometric ops fill with reflection.
timm's (`rand-`, 15 ops): AutoContrast, Equalize, Invert, Rotate (+-30 M/10 degrees), Posterize,
  Solarize, SolarizeAdd, Color, Contrast, Brightness, Sharpness (enhance factor 0.1 + 1.8 M/10),
  ShearX, ShearY (+-0.3 M/10), TranslateXRel, TranslateYRel (+-0.45 M/10 of the size), constant
  fill; `inc1` swaps in increasing-severity Posterize / Solarize / Color / Contrast / Brightness /
  Sharpness. timm's Cutout is its random erasing, separate (here too). Keras has no Invert and no
  SolarizeAdd; neither has Identity.

TrivialAugmentWide (torchvision's recipe) is not in Keras. `--config.randaugment=trivial` gives
its sampling structure with Keras's ops: RandAugment(num_ops=1, factor=1.0), one op per image,
strength uniform over Keras's full range. torchvision's has 14 ops (Identity included), 31
magnitude bins, random signs and its own "wide" ranges (rotation +-135 degrees, shear +-0.99,
translation +-32 pixels, enhance 1 +- 0.99, posterize 8..2 bits): an approximation, not the
recipe. AutoAugment policies (timm's `original`, `v0`, ...; torchvision's `imagenet`, ...) are
unsupported: there is no maintained TF / Keras implementation at TF 2.21.

AugMix: `--config.augmix=augmix-m3-w3-d3` (timm's `--aa augmix-...`).
- `mM` (severity 0..10, default 3) -> `factor = M / 10` (timm's default m3 is Keras's default
  factor 0.3); `wW` (default 3) -> `num_chains`; `dD` -> `chain_depth` (default 3); `aA` (default
  1.0) -> `alpha` (Dirichlet chain weights, Beta weight of the original image).
- Depth: Keras fills each of the `chain_depth` slots with one of its ops or nothing (1 chance in
  12), so a chain has up to D ops (D in 77% of chains at D = 3); timm applies exactly D ops, or
  1..3 when `d` is absent. Keras draws each op's strength uniformly in [0, factor], as timm's
  AugMix does by default (`mstdS` and `b1`, timm's blended mode, are accepted and not applied).
- Keras's ops (AugMix all_ops=True): the 11 above. timm's: the same kinds (ShearX / ShearY and
  TranslateX / TranslateY separate, increasing-severity colour ops).
- timm trains AugMix with its JSD consistency loss over clean and augmented copies; jaxcnn does
  not (one augmented copy per example, the usual loss).
Only one of RandAugment and AugMix may be set (timm's `--aa` takes one policy).

Random erasing: `--config.random_erasing=0.25`, the probability per image (timm's `--reprob`,
torchvision's RandomErasing(p)). Keras's RandomErasing with `factor=(p, p)` (a bare `factor=p`
would apply it with probability U[0, p], i.e. p / 2 on average), `scale=(0.02, 0.33)` and
`fill_value=0`, on the normalised image: the erased box is zero, the dataset's mean colour, as
torchvision's recipe has it (timm's default `--remode pixel` fills with per-pixel normal noise
instead; Keras's noise fill, N(0, 1) times the top of the value range, clipped, does not match it
on normalised images). The box's sides are sqrt(U[0.02, 0.33]) of the height and of the width,
drawn independently (area 2% to 33% of the image, aspect ratio 0.25..4.1); torchvision draws the
area uniformly in the same range and the aspect ratio log-uniformly in [0.3, 3.3]. One box per
image.

Grayscale images go through the same ops with one channel (colour degeneration is the identity on
them; every other op acts on the single channel as it would on each channel of an RGB image with
equal channels, to float rounding).

Cost, measured on one CPU thread of the development machine (tf.data map, per image): RandAugment
n2 1.1 ms at 28 x 28 x 1, 1.5 ms at 32 x 32 x 3, 11 ms at 224 x 224 x 3; AugMix w3-d3 5.4, 7.7
and 73 ms; random erasing 0.3, 0.3 and 4 ms; the pipeline without a policy about 0.1-0.3 ms. Most
of it at small sizes is tf.switch_case: TensorFlow lowers it to Switch / Merge, whose untaken
branches still cost per node. Tracing a policy (a few seconds for AugMix) happens once per process
and image shape (`_before_fn`).
"""

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Mapping

from jaxcnn.data.tf import tf  # first: TensorFlow set up (accelerators hidden) before Keras loads

# isort: split
import keras  # TensorFlow imports it too; the layers run on its TensorFlow backend (below)

__all__ = [
    "AugMixSettings",
    "Policy",
    "RandAugmentSettings",
    "apply_after_normalize",
    "apply_before_normalize",
    "parse_augmix",
    "parse_randaugment",
    "parse_random_erasing",
]

# timm's magnitude scale: m0 .. m10 (its _LEVEL_DENOM); Keras's factor is M / 10.
_LEVEL_MAX = 10
# timm's / torchvision's AutoAugment policy names.
_AUTOAUGMENT = ("original", "originalr", "v0", "v0r", "3a", "imagenet", "cifar10", "svhn")
_ERASE_SCALE = (0.02, 0.33)  # torchvision's RandomErasing(scale=...)
_SECTION = re.compile(r"([a-z]+)(\d+(?:\.\d*)?)")

_RANDAUGMENT_VALID = (
    "valid: 'rand' then -mM (magnitude 0..10), -nN (ops per image, >= 1), -mmaxM, and timm's "
    "-mstdS / -pP / -incI (accepted, not applied), e.g. 'rand-m9-n2-mstd0.5'; or 'trivial'"
)
_AUGMIX_VALID = (
    "valid: 'augmix' then -mM (severity 0..10), -wW (chains, >= 1), -dD (depth, >= 1), -aA "
    "(alpha > 0), and timm's -mstdS / -bB (accepted, not applied), e.g. 'augmix-m3-w3-d3'"
)


@dataclasses.dataclass(frozen=True)
class RandAugmentSettings:
    """`keras.layers.RandAugment(num_ops=..., factor=...)`, parsed from `spec`.

    Attributes:
        spec: the config string.
        num_ops: ops applied per image.
        factor: Keras's strength bound: each op's strength is drawn from U[0, factor].
        not_applied: the spec's timm options that Keras cannot express (see the module docstring).
    """

    spec: str
    num_ops: int
    factor: float
    not_applied: tuple[str, ...] = ()

    def describe(self) -> str:
        name = "TrivialAugment-like " if self.spec == "trivial" else ""
        out = f"{name}RandAugment(num_ops={self.num_ops}, factor={self.factor:g})"
        return out + _not_applied(self.not_applied)


@dataclasses.dataclass(frozen=True)
class AugMixSettings:
    """`keras.layers.AugMix(num_chains=..., chain_depth=..., factor=..., alpha=...)`."""

    spec: str
    num_chains: int
    chain_depth: int
    factor: float
    alpha: float
    not_applied: tuple[str, ...] = ()

    def describe(self) -> str:
        out = (
            f"AugMix(num_chains={self.num_chains}, chain_depth={self.chain_depth}, "
            f"factor={self.factor:g}, alpha={self.alpha:g}; no JSD loss)"
        )
        return out + _not_applied(self.not_applied)


def _not_applied(options: tuple[str, ...]) -> str:
    return f" [timm's {', '.join(options)} not applied]" if options else ""


@dataclasses.dataclass(frozen=True)
class Policy:
    """What the training pipeline applies on top of crop + flip (see the module docstring).

    Attributes:
        randaugment: RandAugment on the 0..255 image, or None.
        augmix: AugMix on the 0..255 image, or None.
        random_erasing: the probability of erasing a box of the normalised image.
    """

    randaugment: RandAugmentSettings | None = None
    augmix: AugMixSettings | None = None
    random_erasing: float = 0.0

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Policy | None":
        """The policy of a training config (keys `randaugment`, `augmix`, `random_erasing`);
        None when none is on. Raises ValueError, one line naming the flag, for a bad value."""
        randaugment = parse_randaugment(cfg.get("randaugment"))
        augmix = parse_augmix(cfg.get("augmix"))
        erasing = parse_random_erasing(cfg.get("random_erasing", 0.0))
        if randaugment is not None and augmix is not None:
            raise ValueError(
                f"--config.randaugment={randaugment.spec!r} and --config.augmix={augmix.spec!r} are "
                "both set: choose one (timm's --aa takes a single policy)"
            )
        if randaugment is None and augmix is None and not erasing:
            return None
        return cls(randaugment, augmix, erasing)

    def describe(self) -> str:
        """One line for the run's output, e.g. "RandAugment(num_ops=2, factor=0.9) + random
        erasing p=0.25 (zero fill after normalisation)"."""
        parts = [s.describe() for s in (self.randaugment, self.augmix) if s is not None]
        if self.random_erasing:
            parts.append(
                f"random erasing p={self.random_erasing:g} (zero fill after normalisation)"
            )
        return " + ".join(parts) or "no augmentation policy"


def _fail(flag: str, spec, problem: str, valid: str) -> ValueError:
    return ValueError(f"--config.{flag}={spec!r}: {problem}; {valid}")


def _sections(flag: str, spec: str, valid: str, keys: tuple[str, ...]) -> dict[str, str]:
    """{key: value} of the dash-separated `keyVALUE` sections after the spec's first."""
    out: dict[str, str] = {}
    for part in spec.split("-")[1:]:
        match = _SECTION.fullmatch(part)
        if match is None or match.group(1) not in keys:
            raise _fail(flag, spec, f"unknown section {part!r}", valid)
        key, value = match.groups()
        if key in out:
            raise _fail(flag, spec, f"{key!r} is given twice", valid)
        out[key] = value
    return out


def _number(flag, spec, valid, key, value, lo, hi, *, integer=False, lo_open=False) -> float:
    x = float(value)
    bad = (integer and not x.is_integer()) or x > hi or x < lo or (lo_open and x == lo)
    if bad:
        kind = "an integer" if integer else "a number"
        lo_text = f"> {lo:g}" if lo_open else f">= {lo:g}"
        hi_text = "" if math.isinf(hi) else f" and <= {hi:g}"
        raise _fail(flag, spec, f"{key}{value}: {key} must be {kind} {lo_text}{hi_text}", valid)
    return int(x) if integer else x


def parse_randaugment(spec: str | None) -> RandAugmentSettings | None:
    """`--config.randaugment` (timm's notation, or "trivial") as Keras settings; None (or "") is
    off. Raises ValueError (one line) for anything else."""
    flag, valid = "randaugment", _RANDAUGMENT_VALID
    if spec is None or spec == "":
        return None
    if not isinstance(spec, str):
        raise _fail(flag, spec, "not a string", valid)
    if spec == "trivial":
        return RandAugmentSettings(spec, num_ops=1, factor=1.0)
    head = spec.split("-")[0]
    if head in _AUTOAUGMENT:
        raise _fail(
            flag,
            spec,
            "AutoAugment policies are not supported (no maintained TF / Keras implementation at "
            "TF 2.21)",
            valid,
        )
    if head == "augmix":
        raise _fail(flag, spec, "that is an AugMix spec: set --config.augmix instead", valid)
    if head != "rand":
        raise _fail(flag, spec, f"unknown policy {head!r}", valid)
    sec = _sections(flag, spec, valid, ("m", "n", "mstd", "mmax", "inc", "p"))
    num = functools.partial(_number, flag, spec, valid)
    magnitude = num("m", sec["m"], 0, _LEVEL_MAX) if "m" in sec else _LEVEL_MAX
    num_ops = num("n", sec["n"], 1, math.inf, integer=True) if "n" in sec else 2
    if "mmax" in sec:
        magnitude = min(magnitude, num("mmax", sec["mmax"], 0, math.inf))
    not_applied = []
    if "mstd" in sec and num("mstd", sec["mstd"], 0, math.inf) <= 100:  # > 100: timm's uniform
        not_applied.append(f"mstd{sec['mstd']}")
    if "inc" in sec and num("inc", sec["inc"], 0, 1, integer=True):
        not_applied.append(f"inc{sec['inc']}")
    if "p" in sec and num("p", sec["p"], 0, 1) != 1:
        not_applied.append(f"p{sec['p']}")
    return RandAugmentSettings(spec, num_ops, magnitude / _LEVEL_MAX, tuple(not_applied))


def parse_augmix(spec: str | None) -> AugMixSettings | None:
    """`--config.augmix` (timm's notation) as Keras settings; None (or "") is off. Raises
    ValueError (one line) for anything else."""
    flag, valid = "augmix", _AUGMIX_VALID
    if spec is None or spec == "":
        return None
    if not isinstance(spec, str):
        raise _fail(flag, spec, "not a string", valid)
    head = spec.split("-")[0]
    if head == "rand" or head in _AUTOAUGMENT or spec == "trivial":
        raise _fail(flag, spec, "not an AugMix spec (RandAugment: --config.randaugment)", valid)
    if head != "augmix":
        raise _fail(flag, spec, f"unknown policy {head!r}", valid)
    sec = _sections(flag, spec, valid, ("m", "w", "d", "a", "mstd", "b"))
    num = functools.partial(_number, flag, spec, valid)
    not_applied = []
    if "mstd" in sec and num("mstd", sec["mstd"], 0, math.inf) <= 100:
        not_applied.append(f"mstd{sec['mstd']}")
    if "b" in sec and num("b", sec["b"], 0, 1, integer=True):
        not_applied.append(f"b{sec['b']}")
    return AugMixSettings(
        spec,
        num_chains=num("w", sec["w"], 1, math.inf, integer=True) if "w" in sec else 3,
        chain_depth=num("d", sec["d"], 1, math.inf, integer=True) if "d" in sec else 3,
        factor=(num("m", sec["m"], 0, _LEVEL_MAX) if "m" in sec else 3) / _LEVEL_MAX,
        alpha=num("a", sec["a"], 0, math.inf, lo_open=True) if "a" in sec else 1.0,
        not_applied=tuple(not_applied),
    )


def parse_random_erasing(p) -> float:
    """`--config.random_erasing`: the probability per image, in [0, 1] (None: 0)."""
    if p is None:
        return 0.0
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise ValueError(
            f"--config.random_erasing={p!r}: must be a probability in [0, 1] (timm's --reprob), "
            "e.g. 0.25; 0 turns it off"
        )
    return float(p)


class _Draws(keras.random.SeedGenerator):
    """A SeedGenerator without state: its n-th draw is `stateless_fold_in(seed, n)`.

    Keras's random ops call `next()` once per draw; a layer's `get_random_transformation(data,
    seed=_Draws(s))` then depends on the tensor `s` alone. The count is kept while tracing: it is
    the order of the draws in Keras's code, the same for every example.
    """

    def __init__(self, seed):  # no super().__init__(): no state variable to create or advance
        self._seed = seed
        self._count = 0

    def next(self, ordered=True):
        self._count += 1
        return tf.random.experimental.stateless_fold_in(self._seed, self._count)


class _Equalization(keras.layers.Equalization):
    """Keras's Equalization with its histogram always from bincount (Keras's TensorFlow path):
    Keras 3.15 loops over the 256 bins whenever the global backend is JAX, even when the layer runs
    on TensorFlow inside tf.data. Should Keras rename the method, Keras's own path runs (slower,
    the same numbers)."""

    def _custom_histogram_fixed_width(self, values, value_range, nbins):
        values = self.backend.cast(values, "float32")
        value_min = self.backend.cast(value_range[0], "float32")
        value_max = self.backend.cast(value_range[1], "float32")
        scaled = (values - value_min) * (nbins - 1) / (value_max - value_min)
        indices = self.backend.numpy.clip(self.backend.cast(scaled, "int32"), 0, nbins - 1)
        return self.backend.numpy.bincount(
            self.backend.numpy.reshape(indices, [-1]), minlength=nbins
        )


def _on_tensorflow(layer, names=()):
    """The layer and its ops on Keras's TensorFlow backend (they only ever see tf.data tensors;
    Keras's own __call__ switches the same way inside tf.data), with the bincount Equalization."""
    if "equalization" in names:
        layer.equalization = _Equalization(value_range=layer.value_range)
    for sub in (layer, *(getattr(layer, name) for name in names)):
        sub.backend.set_backend("tensorflow")
    return layer


# The layers: built once per process and settings, outside any tf.data trace (init_scope), since
# Keras layers create (unused) seed variables.
@functools.cache
def _randaugment_layer(settings: RandAugmentSettings):
    with tf.init_scope():
        layer = keras.layers.RandAugment(
            value_range=(0, 255), num_ops=settings.num_ops, factor=settings.factor
        )
        return _on_tensorflow(layer, layer._AUGMENT_LAYERS)


@functools.cache
def _augmix_layer(settings: AugMixSettings):
    with tf.init_scope():
        layer = keras.layers.AugMix(
            value_range=(0, 255),
            num_chains=settings.num_chains,
            chain_depth=settings.chain_depth,
            factor=settings.factor,
            alpha=settings.alpha,
            all_ops=True,
        )
        return _on_tensorflow(layer, layer._augment_layers)


@functools.cache
def _erasing_layer(p: float):
    with tf.init_scope():
        layer = keras.layers.RandomErasing(
            factor=(p, p), scale=_ERASE_SCALE, fill_value=0.0, value_range=(-math.inf, math.inf)
        )
        return _on_tensorflow(layer)


def _transform(layer, images, seed):
    """One Keras op on a (1, H, W, C) float batch, its transformation drawn from `seed`."""
    transformation = layer.get_random_transformation(images, training=True, seed=_Draws(seed))
    return layer.transform_images(images, transformation)


def _randaugment_plan(layer, seed) -> tuple["tf.Tensor", Callable[[int], "tf.Tensor"]]:
    """The op index of each of the layer's `num_ops` slots, and the seed of op k's transformation
    (one per op and image, as Keras's RandAugment.get_random_transformation draws them)."""
    pick, draws = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    index = tf.random.stateless_uniform(
        (layer.num_ops,), pick, 0, len(layer._AUGMENT_LAYERS), dtype=tf.int32
    )
    return index, lambda k: tf.random.experimental.stateless_fold_in(draws, k)


def _randaugment(images, seed, layer):
    names = layer._AUGMENT_LAYERS
    index, op_seed = _randaugment_plan(layer, seed)
    for i in range(layer.num_ops):
        branches = [
            functools.partial(_transform, getattr(layer, name), images, op_seed(k))
            for k, name in enumerate(names)
        ]
        images = tf.ensure_shape(tf.switch_case(index[i], branches), images.shape)
    return images


def _augmix_plan(layer, seed):
    """(chain weights (num_chains,), weight of the original, op index per (chain, slot) with
    len(ops) for "none", seed of slot (c, d)'s transformation)."""
    mix, pick, draws = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    s_chains, s_a, s_b = tf.unstack(tf.random.experimental.stateless_split(mix, 3))
    alpha = float(layer.alpha)
    gamma = tf.random.stateless_gamma((layer.num_chains,), s_chains, alpha=alpha)
    chain_weights = gamma / tf.reduce_sum(gamma)
    a = tf.random.stateless_gamma((), s_a, alpha=alpha)
    weight = a / (a + tf.random.stateless_gamma((), s_b, alpha=alpha))  # Beta(alpha, alpha)
    ops = tf.random.stateless_uniform(
        (layer.num_chains, layer.chain_depth),
        pick,
        0,
        len(layer._augment_layers) + 1,
        dtype=tf.int32,
    )
    depth = layer.chain_depth
    return (
        chain_weights,
        weight,
        ops,
        lambda c, d: tf.random.experimental.stateless_fold_in(draws, c * depth + d),
    )


def _augmix(images, seed, layer):
    names = layer._augment_layers
    chain_weights, weight, ops, slot_seed = _augmix_plan(layer, seed)
    mixed = tf.zeros_like(images)
    for c in range(layer.num_chains):
        chain = images
        for d in range(layer.chain_depth):
            branches = [
                functools.partial(_transform, getattr(layer, name), chain, slot_seed(c, d))
                for name in names
            ]
            branches.append(functools.partial(tf.identity, chain))  # Keras's `None`: no op
            chain = tf.ensure_shape(tf.switch_case(ops[c, d], branches), images.shape)
        mixed += chain * chain_weights[c]
    # As AugMix.transform_images mixes the chains.
    out = weight * images + (1 - weight) * mixed
    return tf.clip_by_value(out, *map(float, layer.value_range))


# The policy's graphs: tf.functions traced once per process, policy and image shape, that every
# tf.data map calls (train_batches builds a new pipeline each epoch; tracing Keras's ops into
# switch_case branches takes about a second).
@functools.cache
def _before_fn(randaugment: RandAugmentSettings | None, augmix: AugMixSettings | None):
    @tf.function(autograph=False)
    def before(image, seed):
        ra_seed, am_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        images = tf.cast(image, tf.float32)[None]
        if randaugment is not None:
            images = _randaugment(images, ra_seed, _randaugment_layer(randaugment))
        if augmix is not None:
            images = _augmix(images, am_seed, _augmix_layer(augmix))
        return images[0]

    return before


@functools.cache
def _after_fn(p: float):
    @tf.function(autograph=False)
    def after(image, seed):
        return _transform(_erasing_layer(p), tf.cast(image, tf.float32)[None], seed)[0]

    return after


def apply_before_normalize(image, seed, policy: Policy | None) -> "tf.Tensor":
    """RandAugment / AugMix of one (H, W, C) image on the 0..255 scale (uint8 or float), a
    function of the stateless (2,) int seed `seed`: float32 (H, W, C) in 0..255 (not rounded).
    Without either, the image as it came."""
    if policy is None or (policy.randaugment is None and policy.augmix is None):
        return image
    seed = tf.cast(seed, tf.int64)
    out = _before_fn(policy.randaugment, policy.augmix)(image, seed)
    return tf.ensure_shape(out, image.shape)


def apply_after_normalize(image, seed, policy: Policy | None) -> "tf.Tensor":
    """Random erasing of one normalised float (H, W, C) image, a function of the stateless seed
    `seed`: with probability `policy.random_erasing`, one box of it set to 0."""
    if policy is None or not policy.random_erasing:
        return image
    seed = tf.cast(seed, tf.int64)
    return tf.ensure_shape(_after_fn(policy.random_erasing)(image, seed), image.shape)
