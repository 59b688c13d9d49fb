"""The reference figures of the zoo, vendored: parameters, MACs and published accuracy.

Provenance. `reference_numbers.json` (and its readable twin `reference_numbers.md`) is the
project's reference table: every network was built with random initialisation (no weights
downloaded) in torchvision 0.29.1, timm 1.0.31 or pytorchcv 0.0.74, or, where no library has
it, as a paper-faithful build written by the project (the row's `measured_impl` says which).
Parameters are `sum(p.numel())` (BatchNorm running statistics excluded); MACs are the
multiply-accumulates of convolutions and linear layers of one batch-1 forward at the native
resolution, counted by `torch.utils.flop_counter` on PyTorch's meta device. Top-1 accuracy is
that of the published weights (torchvision's weights meta, timm's results tables) or the paper's
table, as each row's `acc_source` says. `lecture_checks.json` holds the hand-checked figures of the
lecture's worked examples (AlexNet's layers, ...).

`supplement.json` holds the figures of the registered networks that the table has no row for, or
whose row counts another build of the same network (each entry's `source` says how its figures
were obtained: a library's model counted, a hand count, an analytic count); no figure there comes
from jaxcnn's own code.

Standard library only, so that tools may read the figures without importing JAX.
"""

import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any


@functools.cache
def _load(filename: str) -> Any:
    return json.loads(resources.files(__name__).joinpath(filename).read_text(encoding="utf-8"))


def rows() -> list[dict[str, Any]]:
    """Every row of the reference table, in its order (each a dict: `key`, `params`, `macs`,
    `resolution`, `top1`, `acc_dataset`, `acc_source`, `paper`, ...). Do not modify them."""
    return list(_load("reference_numbers.json"))


@functools.cache
def _by_key() -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in _load("reference_numbers.json")}


def row(key: str) -> dict[str, Any]:
    """The reference row `key`; raises KeyError naming the valid keys."""
    table = _by_key()
    if key not in table:
        raise KeyError(f"no reference row {key!r}; rows: {', '.join(table)}")
    return table[key]


def supplement() -> dict[str, dict[str, Any]]:
    """Registered name -> {`params`, `macs`, `source`} for the networks the table lacks."""
    return dict(_load("supplement.json"))


def lecture_checks() -> dict[str, Any]:
    """The lecture's worked examples, checked by hand (`lecture_checks.json`)."""
    return dict(_load("lecture_checks.json"))


# Registered name -> reference key, recorded by `jaxcnn.models.registry` as it registers each
# network (`register`): this package sits below the models and does not import them.
_REGISTERED: dict[str, str | None] = {}


def register(name: str, key: str | None) -> tuple[int, int]:
    """Records that the registered network `name` has the reference row `key` (None: none; for
    `published_top1`) and returns its (parameters, MACs), see `figures`."""
    out = figures(name, key)
    _REGISTERED[name] = key
    return out


def figures(name: str, key: str | None) -> tuple[int, int]:
    """(parameters, MACs) of the registered network `name` whose reference row is `key`: the
    supplement's entry where it has one, else the row's."""
    extra = _load("supplement.json").get(name)
    if extra is not None:
        return extra["params"], extra["macs"]
    if key is None:
        raise KeyError(f"{name}: no reference row and no entry in supplement.json")
    r = row(key)
    return r["params"], r["macs"]


def published_top1(
    keys: Mapping[str, str | None] | None = None,
) -> dict[str, tuple[float, str, str]]:
    """Registered name -> (top-1 %, dataset, source) of the networks with a published figure.

    The source is the row's `acc_source` up to its " -- " (the details after it: error rates,
    ensembles, other crops, stay in the table).

    Args:
        keys: registered name -> reference key; None: the registry's (`ModelSpec.reference_key`,
            recorded by `register`; importing `jaxcnn` registers every network).
    """
    keys = _REGISTERED if keys is None else keys
    out = {}
    for name, key in sorted(keys.items()):
        r = _by_key().get(key) if key else None
        if r is not None and r["top1"] is not None:
            out[name] = (r["top1"], r["acc_dataset"], r["acc_source"].split(" -- ")[0])
    return out


def __getattr__(name: str) -> Any:
    # `PUBLISHED_TOP1` (the old `jaxcnn.accuracy` table) is built on first use, once the registry
    # (imported with the `jaxcnn` package) has recorded its names.
    if name == "PUBLISHED_TOP1":
        value = published_top1()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
