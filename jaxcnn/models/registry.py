"""Model registry: names (torchvision / timm spelling) -> module and variant, plus short aliases."""

import dataclasses
import difflib
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxcnn.models import (
    alexnet,
    densenet,
    efficientnet,
    googlenet,
    inception_v3,
    inception_v4,
    lenet,
    mobilenet,
    mobilenet_v3,
    nasnet,
    pnasnet,
    resnet,
    resnet_v2,
    senet,
    shufflenet_v1,
    shufflenet_v2,
    vgg,
    wide_resnet_cifar,
)
from jaxcnn.reference import register


class UnknownModelError(ValueError):
    """An architecture name that is neither registered nor an alias."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of one architecture.

    Attributes:
        name: canonical name (torchvision / timm spelling).
        family: family name, e.g. "resnet".
        module: the linen Module class.
        variant: the frozen dataclass describing the variant.
        resolution: native input resolution (side of a square image).
        min_image_size: smallest input side the network accepts (its total stride).
        params: reference parameter count at the native number of classes (`jaxcnn.reference`:
            the vendored reference table's row, or its supplement).
        macs: reference multiply-accumulates (conv + linear) at `resolution` (likewise).
        paper: the paper (and table) the variant comes from.
        notes: how it departs from the paper, where it does.
    """

    name: str
    family: str
    module: type[nn.Module]
    variant: Any
    resolution: int
    min_image_size: int
    params: int
    macs: int
    paper: str
    notes: str = ""

    @property
    def num_classes(self) -> int:
        return self.variant.num_classes


_MODELS: dict[str, ModelInfo] = {}

# Short names users type, mapped to canonical ones.
ALIASES: dict[str, str] = {
    "resnext50": "resnext50_32x4d",
    "resnext101": "resnext101_32x8d",
    "wide_resnet50": "wide_resnet50_2",
    "wide_resnet101": "wide_resnet101_2",
    "wrn50_2": "wide_resnet50_2",
    "wrn101_2": "wide_resnet101_2",
    # "WRN-28-10" -> "wrn_28_10" (resolve_name maps "-" to "_").
    "wrn_16_8": "wrn16_8",
    "wrn_28_10": "wrn28_10",
    "wrn_40_4": "wrn40_4",
    "se_resnext50": "se_resnext50_32x4d",
    "se_resnext101": "se_resnext101_32x4d",
    # timm's names of the same (legacy, Caffe-layout) networks.
    "legacy_seresnet50": "se_resnet50",
    "legacy_seresnet101": "se_resnet101",
    "legacy_seresnet152": "se_resnet152",
    "legacy_seresnext50_32x4d": "se_resnext50_32x4d",
    "legacy_seresnext101_32x4d": "se_resnext101_32x4d",
    "legacy_senet154": "senet154",
    # timm / Cadene names, and the reference table's spelling of PNASNet-5 Large.
    "nasnetalarge": "nasnet_a_large",
    "nasnetamobile": "nasnet_a_mobile",
    "pnasnet5_large": "pnasnet5large",
    # timm's names of the same MobileNetV3s (same parameter count, timm's own state-dict layout).
    "mobilenetv3_large_100": "mobilenet_v3_large",
    "mobilenetv3_small_100": "mobilenet_v3_small",
    # "ShuffleNet 1x (g=3)", the paper's headline network.
    "shufflenet_v1": "shufflenet_v1_g3",
}


# Each family module lists its registered networks as data (`MODELS`, `base.ModelSpec` rows); their
# parameter and MAC figures come from the vendored reference table (`jaxcnn.reference`).
_FAMILIES = (
    lenet,
    alexnet,
    vgg,
    googlenet,
    inception_v3,
    inception_v4,
    resnet,
    resnet_v2,
    densenet,
    mobilenet,
    mobilenet_v3,
    shufflenet_v2,
    shufflenet_v1,
    efficientnet,
    senet,
    wide_resnet_cifar,
    nasnet,
    pnasnet,
)


_REFERENCE_KEYS: dict[str, str | None] = {}


def _register() -> None:
    for fam in _FAMILIES:
        for spec in fam.MODELS:
            params, macs = register(spec.name, spec.reference_key)
            _REFERENCE_KEYS[spec.name] = spec.reference_key
            _MODELS[spec.name] = ModelInfo(
                name=spec.name,
                family=spec.family,
                module=spec.module,
                variant=spec.variant,
                resolution=spec.resolution,
                min_image_size=spec.min_image_size,
                params=params,
                macs=macs,
                paper=spec.paper,
                notes=spec.notes,
            )


_register()


def reference_keys() -> dict[str, str | None]:
    """Canonical name -> key of its row in `jaxcnn.reference` (None where the table has none)."""
    return dict(_REFERENCE_KEYS)


def list_models(family: str | None = None) -> list[str]:
    """Sorted canonical names of the registered architectures, optionally of one family."""
    return sorted(n for n, i in _MODELS.items() if family is None or i.family == family)


def resolve_name(name: str) -> str:
    """Canonical name for `name` or an alias; raises UnknownModelError listing the closest names."""
    key = name.strip().lower()
    # "ResNet-50" -> "resnet50", "resnext50-32x4d" -> "resnext50_32x4d".
    for candidate in (key, key.replace("-", ""), key.replace("-", "_")):
        candidate = ALIASES.get(candidate, candidate)
        if candidate in _MODELS:
            return candidate
    close = difflib.get_close_matches(key, list(_MODELS) + list(ALIASES), n=5, cutoff=0.5)
    hint = f" Closest: {', '.join(close)}." if close else ""
    raise UnknownModelError(
        f"Unknown architecture {name!r}.{hint} Valid names: {', '.join(list_models())}; "
        f"aliases: {', '.join(sorted(ALIASES))}."
    )


def get_model_info(name: str) -> ModelInfo:
    """The registry entry of `name` (canonical or alias)."""
    return _MODELS[resolve_name(name)]


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    **variant_overrides: Any,
) -> nn.Module:
    """Builds an architecture by name.

    Args:
        name: a name from `list_models()` or an alias (`resnext50`).
        num_classes: classifier outputs; None keeps the variant's native count (1000 for ImageNet
            networks, 10 for the CIFAR ones).
        dtype: computation dtype.
        param_dtype: parameter dtype.
        **variant_overrides: fields of the variant dataclass to change, e.g. `stride_in_1x1=True`
            (ResNet v1) or `zero_init_residual=True`.

    Returns:
        An unbound linen Module; use `model.init(rng, x, train=False)` and `model.apply(...)`.

    Raises:
        UnknownModelError: unknown name (the message lists the closest valid names).
        ValueError: an override that is not a field of the variant.
    """
    info = get_model_info(name)
    variant = info.variant
    if variant_overrides:
        fields = {f.name for f in dataclasses.fields(variant)}
        unknown = sorted(set(variant_overrides) - fields)
        if unknown:
            raise ValueError(
                f"{info.name}: unknown variant option(s) {unknown}; valid: {sorted(fields)}"
            )
        variant = dataclasses.replace(variant, **variant_overrides)
    classes = variant.num_classes if num_classes is None else num_classes
    if classes <= 0:
        raise ValueError(f"num_classes must be positive, got {classes}")
    return info.module(variant=variant, num_classes=classes, dtype=dtype, param_dtype=param_dtype)
