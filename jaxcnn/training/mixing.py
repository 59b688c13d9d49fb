"""Mixup and CutMix on device, as timm's `Mixup(mode='batch')`: one mixing weight per batch.

Written by hand from timm's documented semantics (`timm/data/mixup.py`): no maintained JAX or
TensorFlow library has its batch mode. Keras 3's MixUp / CutMix layers draw a weight per example
with a randomly permuted partner, which is timm's 'elem' mode, not 'batch'.

Per batch: with probability `prob` the batch is mixed at all (else lambda = 1). With both alphas
> 0, CutMix is chosen with probability `switch_prob`, else Mixup; with one > 0, that one. Lambda is
drawn from Beta(alpha, alpha) of the chosen method. Example i is mixed with example N-1-i (the
batch flipped along axis 0), so the batch size must be even. Mixup blends the whole images; CutMix
pastes one box of side ratio sqrt(1 - lambda), centred uniformly and clipped to the image, and (with
`correct_lam`) sets lambda to the share of pixels left unpasted. Targets are the lambda-weighted
label-smoothed one-hots of each example and its partner.

The random draws (`draw`) are kept apart from their application (`apply_mix`) so that tests can
inject known draws; `mix_batch` is the two together. Everything is jittable with static shapes.
"""

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class MixSpec:
    """What to mix and how often; frozen (hashable) so that it can be a static jit argument.

    Attributes:
        mixup_alpha: Mixup's Beta(alpha, alpha) parameter; 0 turns Mixup off.
        cutmix_alpha: CutMix's Beta(alpha, alpha) parameter; 0 turns CutMix off.
        prob: probability that a batch is mixed at all.
        switch_prob: probability of CutMix rather than Mixup when both are on.
        label_smoothing: epsilon of label smoothing applied to both one-hots.
        correct_lam: set CutMix's lambda to the unpasted share of the clipped box (timm's default).
    """

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.0
    correct_lam: bool = True

    @property
    def enabled(self) -> bool:
        """Whether any mixing can happen (an alpha > 0 and a non-zero chance of mixing)."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0

    @classmethod
    def from_config(cls, cfg: Any) -> "MixSpec":
        """The spec that the training config (`jaxcnn/config.py`) asks for."""
        return cls(
            mixup_alpha=float(cfg.mixup_alpha),
            cutmix_alpha=float(cfg.cutmix_alpha),
            prob=float(cfg.mixup_prob),
            switch_prob=float(cfg.mixup_switch_prob),
            label_smoothing=float(cfg.label_smoothing),
        )

    def validate(self) -> None:
        """Raises ValueError naming the config flag whose value is out of range."""
        for flag, value in (
            ("mixup_alpha", self.mixup_alpha),
            ("cutmix_alpha", self.cutmix_alpha),
        ):
            # `not >=` also rejects NaN.
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(
                    f"--config.{flag} must be a finite number >= 0 (0 turns it off), got {value}"
                )
        for flag, value in (
            ("mixup_prob", self.prob),
            ("mixup_switch_prob", self.switch_prob),
            ("label_smoothing", self.label_smoothing),
        ):
            if not 0 <= value <= 1:
                raise ValueError(f"--config.{flag} must be in [0, 1], got {value}")


class MixDraws(NamedTuple):
    """The random choices for one batch (a pytree, so `jax.vmap` over keys gives arrays of them).

    Attributes:
        mixed: bool scalar, whether the batch is mixed at all.
        use_cutmix: bool scalar, CutMix (True) or Mixup (False); False when not mixed.
        lam: float32 scalar, the Beta draw (1 when not mixed); before CutMix's correction.
        cy: int32 scalar, the CutMix box centre row in [0, H).
        cx: int32 scalar, the CutMix box centre column in [0, W).
    """

    mixed: jax.Array
    use_cutmix: jax.Array
    lam: jax.Array
    cy: jax.Array
    cx: jax.Array


def draw(key: jax.Array, spec: MixSpec, height: int, width: int) -> MixDraws:
    """Draws one batch's choices as timm's batch mode does.

    Args:
        key: a `jax.random` key.
        spec: what to mix; must be `enabled`.
        height: image height H (the box centre's range).
        width: image width W.

    Returns:
        The draws; all float32 / int32 / bool, whatever the images' dtype (Beta sampling in
        bfloat16 would be coarse).
    """
    k_mixed, k_switch, k_lam, k_cy, k_cx = jax.random.split(key, 5)
    mixed = jax.random.bernoulli(k_mixed, spec.prob)
    if spec.mixup_alpha > 0 and spec.cutmix_alpha > 0:
        use_cutmix = jax.random.bernoulli(k_switch, spec.switch_prob)
        alpha = jnp.where(use_cutmix, spec.cutmix_alpha, spec.mixup_alpha)
    else:
        # One method on: the choice is static.
        use_cutmix = jnp.asarray(spec.cutmix_alpha > 0)
        alpha = jnp.asarray(max(spec.mixup_alpha, spec.cutmix_alpha), jnp.float32)
    lam = jax.random.beta(k_lam, alpha, alpha, dtype=jnp.float32)
    return MixDraws(
        mixed=mixed,
        use_cutmix=use_cutmix & mixed,
        lam=jnp.where(mixed, lam, 1.0).astype(jnp.float32),
        cy=jax.random.randint(k_cy, (), 0, height, dtype=jnp.int32),
        cx=jax.random.randint(k_cx, (), 0, width, dtype=jnp.int32),
    )


def smooth_one_hot(labels: jax.Array, num_classes: int, label_smoothing: float) -> jax.Array:
    """(N, K) float32 one-hots with off = eps / K and on = 1 - eps + eps / K (timm's values)."""
    off = label_smoothing / num_classes
    on = 1.0 - label_smoothing + off
    return jnp.where(jax.nn.one_hot(labels, num_classes, dtype=jnp.bool_), on, off).astype(
        jnp.float32
    )


def cutmix_box(
    lam: jax.Array, cy: jax.Array, cx: jax.Array, height: int, width: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The clipped box (y_lo, y_hi, x_lo, x_hi), half-open, for a Beta draw `lam` and a centre.

    The sides are int(H * sqrt(1 - lam)) and int(W * sqrt(1 - lam)); the box spans side // 2 on
    each side of the centre, so an odd side loses one pixel, as in timm.
    """
    ratio = jnp.sqrt(jnp.clip(1.0 - lam, 0.0, 1.0))
    # floor == int() here: the products are >= 0.
    cut_h = jnp.floor(height * ratio).astype(jnp.int32)
    cut_w = jnp.floor(width * ratio).astype(jnp.int32)
    y_lo = jnp.clip(cy - cut_h // 2, 0, height)
    y_hi = jnp.clip(cy + cut_h // 2, 0, height)
    x_lo = jnp.clip(cx - cut_w // 2, 0, width)
    x_hi = jnp.clip(cx + cut_w // 2, 0, width)
    return y_lo, y_hi, x_lo, x_hi


def apply_mix(
    images: jax.Array,
    labels: jax.Array,
    draws: MixDraws,
    num_classes: int,
    label_smoothing: float = 0.0,
    correct_lam: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mixes a batch with given draws (the deterministic half of `mix_batch`).

    Args:
        images: (N, H, W, C) floating point, N even.
        labels: (N,) integer class indices.
        draws: from `draw`, or chosen by hand.
        num_classes: K.
        label_smoothing: epsilon.
        correct_lam: for CutMix, lambda := 1 - box area / (H * W) of the clipped box.

    Returns:
        (mixed images in the images' dtype, targets (N, K) float32, lam float32 scalar).
    """
    _, height, width, _ = images.shape
    flipped = images[::-1]
    y_lo, y_hi, x_lo, x_hi = cutmix_box(draws.lam, draws.cy, draws.cx, height, width)
    # A mask from aranges, not a dynamic slice: the box's size varies, the shapes must not.
    rows = jnp.arange(height)
    cols = jnp.arange(width)
    in_box = ((rows >= y_lo) & (rows < y_hi))[:, None] & ((cols >= x_lo) & (cols < x_hi))[None, :]
    paste = (draws.use_cutmix & in_box)[None, :, :, None]
    # CutMix keeps the image outside the box (blend weight 1); Mixup blends everywhere. With
    # lam = 1 (not mixed) the blend is the image itself.
    blend_lam = jnp.where(draws.use_cutmix, 1.0, draws.lam).astype(images.dtype)
    blended = blend_lam * images + (1 - blend_lam) * flipped
    mixed_images = jnp.where(paste, flipped, blended)

    lam = draws.lam
    if correct_lam:
        area = ((y_hi - y_lo) * (x_hi - x_lo)).astype(jnp.float32)
        lam = jnp.where(draws.use_cutmix, 1.0 - area / (height * width), lam)
    lam = lam.astype(jnp.float32)

    targets = smooth_one_hot(labels, num_classes, label_smoothing)
    targets = lam * targets + (1.0 - lam) * targets[::-1]
    return mixed_images, targets, lam


def mix_batch(
    key: jax.Array, images: jax.Array, labels: jax.Array, num_classes: int, spec: MixSpec
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """timm's batch-mode Mixup / CutMix of one batch (jit with num_classes and spec static).

    Args:
        key: a `jax.random` key.
        images: (N, H, W, C) floating point; N must be even when mixing is on.
        labels: (N,) integer class indices.
        num_classes: K.
        spec: what to mix; with mixing off the images come back unchanged.

    Returns:
        (mixed images in the images' dtype, soft targets (N, K) float32, lam float32 scalar: the
        weight of each example's own label).

    Raises:
        ValueError: for a spec out of range, non-floating images, or an odd batch with mixing on.
    """
    spec.validate()
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"mix_batch needs floating point images, got {images.dtype}")
    if not spec.enabled:
        targets = smooth_one_hot(labels, num_classes, spec.label_smoothing)
        return images, targets, jnp.ones((), jnp.float32)
    n, height, width, _ = images.shape
    if n % 2:
        raise ValueError(
            f"Mixup / CutMix pair example i with N-1-i and need an even batch, got {n} examples"
        )
    draws = draw(key, spec, height, width)
    return apply_mix(images, labels, draws, num_classes, spec.label_smoothing, spec.correct_lam)


def dominant_labels(labels: jax.Array, lam: jax.Array) -> jax.Array:
    """The label with the larger weight in each mixed example (train accuracy is scored on it).

    Args:
        labels: (N,) the batch's labels before mixing.
        lam: the weight of each example's own label, from `mix_batch`.

    Returns:
        `labels` if lam >= 0.5, else the partners' labels (`labels` flipped).
    """
    return jnp.where(lam >= 0.5, labels, labels[::-1])
