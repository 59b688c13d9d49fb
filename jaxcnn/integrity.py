"""Checksums of what a checkpoint holds, and their verification on the way back.

Orbax commits a checkpoint atomically but verifies no data: a flipped byte in an array file is
read back as a different number (or as a decompression error at best). Every checkpoint jaxcnn
writes therefore carries a manifest, a small JSON item saved beside the arrays, with

    format     1
    algorithm  "crc32c"
    arrays     {leaf path: {"crc32c", "shape", "dtype"}} of every array of the state
    meta       the CRC32C of the checkpoint's JSON metadata (canonical: sorted keys)
    self       the CRC32C of all of the above, so that a damaged manifest is a damaged checkpoint

The checksums are computed on the host copy of each array at save time (the bytes Orbax writes)
and recomputed on the arrays as restored, after Orbax has read, decompressed and placed them: what
is verified is what the program goes on to use, whatever the storage format or the devices. The
shapes and dtypes are checked against Orbax's metadata before any array is read, so a metadata
file that declares a 10^12-element array is refused without allocating it.

CRC32C (Castagnoli), through google-crc32c's hardware implementation, is the checksum Cloud
Storage keeps for every object (`gcloud storage hash`); at about 10 GB/s here it adds a few tens
of milliseconds to a ResNet-50 save (benchmarks/RESULTS.md). It detects accidental damage (bit rot,
truncation, a file from another save), not tampering: whoever can rewrite the arrays can rewrite
the manifest.
"""

import json
from collections.abc import Mapping
from typing import Any

import google_crc32c
import jax
import numpy as np

FORMAT = 1
ALGORITHM = "crc32c"


class IntegrityError(ValueError):
    """What a checkpoint holds does not match its manifest; the message names the array or item."""


def leaf_path(path: tuple[Any, ...]) -> str:
    """`params/stage1_block1/conv1/kernel` for a JAX key path: dict keys, sequence indices and
    attribute names alike, so that a tree saved with named tuples (optax states) and the same tree
    restored without a target (as dicts and lists) name their leaves the same way."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def host_array(x: Any) -> np.ndarray:
    """This process's full copy of `x` as a NumPy array (a replicated array's local replica, so
    that every process of a multi-host job can checksum what it saves and restores).

    Raises:
        IntegrityError: `x` is split over processes (no process holds all of it; jaxcnn's train
            states are replicated, so this is a programming error, not damage).
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise IntegrityError("an array split over processes cannot be checksummed whole")
        x = x.addressable_data(0)
    return np.asarray(jax.device_get(x))


def crc32c(a: np.ndarray) -> int:
    """CRC32C of an array's bytes in C order (its dtype's own byte order)."""
    view = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    view.flags.writeable = False  # google-crc32c's C extension takes read-only buffers only
    return google_crc32c.value(view)


def json_crc32c(obj: Any) -> int:
    """CRC32C of `obj` as canonical JSON (sorted keys, no spaces): equal for equal values, however
    the file that held them was laid out."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return google_crc32c.value(text.encode())


def array_entries(tree: Any) -> dict[str, dict[str, Any]]:
    """`{leaf path: {"crc32c", "shape", "dtype"}}` of every array leaf of `tree`."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        a = host_array(leaf)
        out[leaf_path(path)] = {
            "crc32c": crc32c(a),
            "shape": list(a.shape),
            "dtype": str(a.dtype),
        }
    return out


def make_manifest(state: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of a checkpoint of `state` (a pytree of arrays) and `meta` (its JSON)."""
    body = {
        "format": FORMAT,
        "algorithm": ALGORITHM,
        "arrays": array_entries(state),
        "meta": json_crc32c(dict(meta)),
    }
    return body | {"self": json_crc32c(body)}


def check_manifest(manifest: Any) -> None:
    """IntegrityError unless `manifest` is a whole manifest of a known format."""
    if not isinstance(manifest, Mapping) or "self" not in manifest:
        raise IntegrityError("its checksum manifest is not a manifest")
    body = {k: v for k, v in manifest.items() if k != "self"}
    if json_crc32c(body) != manifest["self"]:
        raise IntegrityError("its checksum manifest does not match its own checksum")
    if body.get("format") != FORMAT or body.get("algorithm") != ALGORITHM:
        raise IntegrityError(
            f"its checksum manifest has format {body.get('format')!r} / "
            f"{body.get('algorithm')!r}; this jaxcnn reads format {FORMAT} / {ALGORITHM}"
        )


def check_meta(manifest: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """IntegrityError when the JSON metadata is not the one the manifest was made with."""
    if json_crc32c(dict(meta)) != manifest["meta"]:
        raise IntegrityError("its metadata (meta) does not match its checksum")


def check_layout(manifest: Mapping[str, Any], saved: Any) -> None:
    """IntegrityError when Orbax's metadata of the arrays (`saved`: a tree of objects with `shape`
    and `dtype`, read without the arrays) disagrees with the manifest: an array missing, added, or
    of another shape or dtype. Checked before anything is read or allocated.

    Args:
        manifest: a checked manifest.
        saved: the metadata tree.
    """
    expected = manifest["arrays"]
    found = {
        leaf_path(p): m
        for p, m in jax.tree_util.tree_flatten_with_path(
            saved, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
        )[0]
    }
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        what = [f"missing {', '.join(missing[:3])}"] if missing else []
        what += [f"not in its manifest {', '.join(extra[:3])}"] if extra else []
        raise IntegrityError(f"its arrays are not the ones it was saved with ({'; '.join(what)})")
    for path, m in found.items():
        e = expected[path]
        if list(m.shape) != e["shape"] or str(np.dtype(m.dtype)) != e["dtype"]:
            raise IntegrityError(
                f"array {path} is recorded as {m.dtype}{list(m.shape)}, saved as "
                f"{e['dtype']}{e['shape']}"
            )


def check_arrays(manifest: Mapping[str, Any], tree: Any) -> None:
    """IntegrityError naming the first array of `tree` (as restored) whose bytes, shape or dtype
    differ from the manifest's, or that is missing."""
    expected = manifest["arrays"]
    found = array_entries(tree)
    missing = sorted(set(expected) - set(found))
    if missing:
        raise IntegrityError(f"array {missing[0]} was not restored")
    for path, got in found.items():
        e = expected.get(path)
        if e is None:
            raise IntegrityError(f"array {path} is not in its manifest")
        if got["shape"] != e["shape"] or got["dtype"] != e["dtype"]:
            raise IntegrityError(
                f"array {path} came back as {got['dtype']}{got['shape']}, saved as "
                f"{e['dtype']}{e['shape']}"
            )
        if got["crc32c"] != e["crc32c"]:
            raise IntegrityError(f"array {path} does not match its checksum")
