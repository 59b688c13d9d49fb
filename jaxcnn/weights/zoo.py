"""The published-weights zoo: find an entry, fetch its file (when online), verify it.

`jaxcnn.load_pretrained("resnet50")` (torchvision's default weights) or
`load_pretrained("timm:inception_v4")` (`jaxcnn.weights.loading`) returns the model, its variables
and the zoo entry (URL, checksum, preprocessing, labels, accuracy). The weights file is looked for in
the cache directory (`$JAXCNN_CACHE`, default `~/.cache/jaxcnn`) under `weights/`; when it is not
there it is downloaded, unless `JAXCNN_OFFLINE=1`, and its SHA-256 checked against the prefix that
torchvision publishes in the file name. The converted variables are cached as an Orbax checkpoint in
`converted/<name>/` beside a `meta.json`, so conversion happens once.
"""

import difflib
import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from jaxcnn.weights.convert import InitFromError
from jaxcnn.weights.zoo_data import ZOO


def cache_dir() -> Path:
    """`$JAXCNN_CACHE` or `~/.cache/jaxcnn`."""
    return Path(os.environ.get("JAXCNN_CACHE", "~/.cache/jaxcnn")).expanduser()


def zoo_entry(spec: str) -> tuple[str, dict[str, Any]]:
    """(canonical spec, entry) for `torchvision:NAME[.WEIGHTS]`, `timm:NAME` or a bare jaxcnn name
    (its torchvision default weights, else its timm weights)."""
    key = spec.strip()
    if ":" not in key:
        from jaxcnn.models import get_model_info  # noqa: PLC0415

        arch = get_model_info(key).name
        for k in sorted(ZOO, key=lambda k: (not k.startswith("torchvision:"), k.count("."))):
            if ZOO[k]["arch"] == arch:
                return k, ZOO[k]
        raise InitFromError(f"no published weights for {arch} in the zoo")
    if key not in ZOO:
        close = difflib.get_close_matches(key, list(ZOO), n=5, cutoff=0.5)
        raise InitFromError(
            f"{spec!r} is not in the model zoo."
            + (f" Closest: {', '.join(close)}." if close else "")
            + " See jaxcnn/zoo_data.py for every entry."
        )
    return key, ZOO[key]


def _file_name(spec: str, entry: dict[str, Any]) -> str:
    name = entry["url"].rsplit("/", 1)[-1]
    # Hugging Face files are all called model.safetensors: prefix the repo name.
    return f"{spec.split(':', 1)[1]}-{name}" if name == "model.safetensors" else name


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, entry: dict[str, Any]) -> None:
    prefix = entry.get("sha256_prefix")
    if prefix and not sha256(path).startswith(prefix):
        raise InitFromError(
            f"{path} does not match the published checksum (sha256 starting {prefix}): a partial "
            f"or different file; delete it and fetch {entry['url']} again"
        )


def weights_file(spec: str, arch: str | None = None) -> Path:
    """The verified weights file of a zoo entry, downloading it if needed and allowed.

    Raises:
        InitFromError: unknown entry, weights of another architecture than `arch`, offline with no
            file (the message gives the URL and the exact path to put it at), a bad checksum.
    """
    key, entry = zoo_entry(spec)
    if arch is not None and entry["arch"] != arch:
        raise InitFromError(f"{key} holds weights for {entry['arch']}, not {arch}")
    path = cache_dir() / "weights" / _file_name(key, entry)
    if path.exists():
        _verify(path, entry)
        return path
    fetch = f"fetch {entry['url']} and save it as {path}"
    if os.environ.get("JAXCNN_OFFLINE") == "1":
        raise InitFromError(f"{key}: weights not in the cache and JAXCNN_OFFLINE=1: {fetch}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry["url"], timeout=60) as r:
            shutil.copyfileobj(r, out)
        _verify(Path(tmp), entry)
        os.replace(tmp, path)
    except (urllib.error.URLError, OSError) as e:
        raise InitFromError(f"{key}: could not download the weights ({e}); {fetch}") from e
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
