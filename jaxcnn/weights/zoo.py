"""The published-weights zoo: find an entry, fetch its file (when online), verify it.

`jaxcnn.load_pretrained("resnet50")` (torchvision's default weights) or
`load_pretrained("timm:inception_v4")` (`jaxcnn.weights.loading`) returns the model, its variables
and the zoo entry (URL, checksum, preprocessing, labels, accuracy). The weights file is looked for in
the cache directory (`$JAXCNN_CACHE`, default `~/.cache/jaxcnn`) under `weights/`; when it is not
there it is downloaded, unless `JAXCNN_OFFLINE=1`, and its SHA-256 checked against the prefix that
torchvision publishes in the file name. The converted variables are cached as an Orbax checkpoint in
`converted/<name>/` beside a `meta.json`, so conversion happens once.

The entries are package data, `jaxcnn/weights/zoo.json`, generated from the metadata of the
installed torchvision and timm by `tools/make_zoo.py` (never edited by hand); reading them needs
neither package.
"""

import dataclasses
import difflib
import hashlib
import importlib.resources
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jaxcnn import rundir
from jaxcnn.weights.convert import InitFromError

__all__ = ["ZOO", "ZooEntry", "cache_dir", "load_zoo", "sha256", "weights_file", "zoo_entry"]


@dataclasses.dataclass(frozen=True)
class ZooEntry(Mapping[str, Any]):
    """One published weights file of the zoo: where it is, how to check it, how to feed it.

    Also a read-only mapping of its field names (`entry["arch"]`, `dict(entry)`), as the entries
    were plain dicts before; `dict(entry, ...)` is what `load_pretrained` writes to `meta.json`.

    Attributes:
        arch: the jaxcnn architecture the weights are for (a `jaxcnn.list_models()` name).
        url: where the weights file is published (download.pytorch.org, a GitHub release or
            Hugging Face).
        sha256_prefix: the SHA-256 prefix in the file's name (`name-<prefix>.pth`, what torch.hub
            checks), or None where none is published (Hugging Face files).
        input_size: side of the square crop the network is evaluated at.
        resize_size: the shorter image side is resized to this before the centre crop.
        interpolation: the resize's interpolation, "bilinear" or "bicubic".
        mean: per-channel (RGB) mean subtracted from images scaled to [0, 1].
        std: per-channel (RGB) standard deviation the centred images are divided by.
        top1: the publisher's own ImageNet-1k validation top-1 accuracy (%), None where the
            publisher's metadata gives none (timm's pretrained configs never do).
        top5: the same for top-5 accuracy (%).
        labels: the label set of the classifier, "imagenet1k" (1000 classes, the usual order).
        source: where the metadata comes from: the torchvision weights enum member, or the timm
            pretrained config and the file it points at.
        notes: anything a user of the weights should know ("" when nothing).
    """

    arch: str
    url: str
    sha256_prefix: str | None
    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    top1: float | None
    top5: float | None
    labels: str
    source: str
    notes: str = ""

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ZooEntry":
        """The entry of one `zoo.json` record (its lists become tuples).

        Raises:
            ValueError: a record with missing or unknown fields.
        """
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing, unknown = required - set(data), set(data) - set(_FIELDS)
        if missing or unknown:
            raise ValueError(f"zoo record: missing {sorted(missing)}, unknown {sorted(unknown)}")
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})


_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ZooEntry))


def load_zoo() -> dict[str, ZooEntry]:
    """The entries of the packaged `zoo.json`, by key (`torchvision:NAME[.WEIGHTS]`, `timm:NAME`)."""
    text = importlib.resources.files("jaxcnn.weights").joinpath("zoo.json").read_text("utf-8")
    return {key: ZooEntry.from_json(rec) for key, rec in json.loads(text)["entries"].items()}


# Every entry by key: `torchvision:NAME` (the enum's DEFAULT), `torchvision:NAME.WEIGHTS`,
# `timm:NAME`.
ZOO: dict[str, ZooEntry] = load_zoo()


def cache_dir() -> Path:
    """`$JAXCNN_CACHE` or `~/.cache/jaxcnn`."""
    return Path(os.environ.get("JAXCNN_CACHE", "~/.cache/jaxcnn")).expanduser()


def zoo_entry(spec: str) -> tuple[str, ZooEntry]:
    """(canonical spec, entry) of a zoo name.

    Args:
        spec: `torchvision:NAME[.WEIGHTS]`, `timm:NAME` or a bare jaxcnn name (its torchvision
            default weights, else its timm weights).

    Raises:
        InitFromError: no such entry (with the closest keys), or no weights for the architecture.
    """
    key = spec.strip()
    if ":" not in key:
        from jaxcnn.models import get_model_info

        arch = get_model_info(key).name
        for k in sorted(ZOO, key=lambda k: (not k.startswith("torchvision:"), k.count("."))):
            if ZOO[k].arch == arch:
                return k, ZOO[k]
        raise InitFromError(f"no published weights for {arch} in the zoo")
    if key not in ZOO:
        close = difflib.get_close_matches(key, list(ZOO), n=5, cutoff=0.5)
        raise InitFromError(
            f"{spec!r} is not in the model zoo."
            + (f" Closest: {', '.join(close)}." if close else "")
            + " See jaxcnn/weights/zoo.json for every entry."
        )
    return key, ZOO[key]


def _file_name(spec: str, entry: ZooEntry) -> str:
    name = entry.url.rsplit("/", 1)[-1]
    # Hugging Face files are all called model.safetensors: prefix the repo name.
    return f"{spec.split(':', 1)[1]}-{name}" if name == "model.safetensors" else name


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, entry: ZooEntry) -> None:
    prefix = entry.sha256_prefix
    if prefix and not sha256(path).startswith(prefix):
        raise InitFromError(
            f"{path} does not match the published checksum (sha256 starting {prefix}): a partial "
            f"or different file; delete it and fetch {entry.url} again"
        )


def weights_file(spec: str, arch: str | None = None) -> Path:
    """The verified weights file of a zoo entry, downloading it if needed and allowed.

    Raises:
        InitFromError: unknown entry, weights of another architecture than `arch`, offline with no
            file (the message gives the URL and the exact path to put it at), a bad checksum.
    """
    key, entry = zoo_entry(spec)
    if arch is not None and entry.arch != arch:
        raise InitFromError(f"{key} holds weights for {entry.arch}, not {arch}")
    path = cache_dir() / "weights" / _file_name(key, entry)
    if path.exists():
        _verify(path, entry)
        return path
    fetch = f"fetch {entry.url} and save it as {path}"
    if os.environ.get("JAXCNN_OFFLINE") == "1":
        raise InitFromError(f"{key}: weights not in the cache and JAXCNN_OFFLINE=1: {fetch}")
    try:
        # Written beside the target and renamed into place only once its checksum is verified.
        with rundir.atomic_path(path) as tmp:
            with tmp.open("wb") as out, urllib.request.urlopen(entry.url, timeout=60) as r:
                shutil.copyfileobj(r, out)
            _verify(Path(tmp), entry)
    except (urllib.error.URLError, OSError) as e:
        raise InitFromError(f"{key}: could not download the weights ({e}); {fetch}") from e
    return path
