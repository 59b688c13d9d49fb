"""A folder of images as a dataset: `--dataset=folder:PATH`.

Two layouts are read, the ones torchvision's `ImageFolder` and Keras' `image_dataset_from_directory`
use:

    PATH/<class>/<image>                        a validation share is held out of each class
    PATH/train/<class>/<image> + PATH/val/...   (`val`, `validation`, `valid` or `test`)

Class names are the class folders' names, sorted; images may sit in subfolders of a class folder.
Files with another extension than the image formats read (`READ_FORMATS`) are skipped and counted.
Without a validation folder, `val_fraction` of each class (rounded, at least one image of every
class with two or more) is held out, chosen by a fixed seed (`VAL_SEED`): runs with different
training seeds are evaluated on the same images.

Every image is opened once before training (`inspect`): its header is read first, and an image
declaring more than `MAX_PIXELS` pixels is refused before any pixel is decoded (a decompression
bomb stays a few bytes in memory); then it is decoded in full, so that a truncated or corrupt file
is found before any device is used rather than in the middle of an epoch. The same pass measures
the train split's channel statistics. What it found (class counts, conversions, skipped files,
statistics, the split) is a `FolderRecord`, saved in the run directory (`dataset.json`) and
reused on resume when the folder still holds the same files.

Decoding is Pillow's, in training as in `inspect` and in `jaxcnn.predict`: one decoder for every
path, which converts the modes TensorFlow's decoders do not (CMYK JPEG, 16-bit PNG, palette, alpha)
the same way everywhere, and applies the EXIF orientation of photographs.
"""

import concurrent.futures
import dataclasses
import hashlib
import io
import os
import re
from collections import Counter
from typing import Any

import numpy as np
from etils import epath

PREFIX = "folder:"
# Extension -> the Pillow format it must hold (a .png holding a JPEG is read; a .txt is not).
READ_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
# The Pillow formats read (MPO: the JPEG of cameras that embed a second picture; its first frame
# is the photo).
_FORMATS = set(READ_FORMATS.values()) | {"MPO"}
# Pillow's own decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS, ~89.5 million pixels: a
# 9459 x 9459 image): larger headers are refused before decoding.
MAX_PIXELS = 89_478_485
TRAIN_DIR = "train"
VAL_DIRS = ("val", "validation", "valid", "test")
VAL_SEED = 0
# Modes whose pixels are one grey value (with or without alpha).
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


class FolderError(ValueError):
    """A folder that cannot be read as a dataset; the message says what is wrong and what to do."""


class BadImageError(ValueError):
    """One file that cannot be used as an image (unreadable, truncated, too large, ...)."""

    def __init__(self, path: Any, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def is_folder(name: str) -> bool:
    """Whether a `--dataset` value names a folder (`folder:PATH`)."""
    return str(name).startswith(PREFIX)


def canonical(name: str) -> str:
    """`folder:PATH` with PATH absolute (what a run records, so that it resumes from any cwd)."""
    from jaxcnn import rundir

    return PREFIX + str(rundir.as_path(name[len(PREFIX) :]))


def root_of(name: str) -> epath.Path:
    from jaxcnn import rundir

    path = name[len(PREFIX) :]
    if not path:
        raise FolderError("--dataset=folder: needs a path, e.g. --dataset=folder:~/my_images")
    return rundir.as_path(path)


# ---------------------------------------------------------------------------------------------------
# Decoding one image.


def open_image(data: bytes, name: Any = "image"):
    """A Pillow image of encoded `data`, its header checked; nothing is decoded yet.

    Raises:
        BadImageError: not an image Pillow can identify, a format outside `READ_FORMATS`, a
            header declaring more than `MAX_PIXELS` pixels, or any other failure to open it.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImageError(name, "not an image file (Pillow cannot identify it)") from None
    except Image.DecompressionBombError as e:  # over twice Pillow's limit: refused at open
        found = re.search(r"\((\d+) pixels\)", str(e))
        count = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise BadImageError(
            name,
            f"its header declares {count}, more than the {MAX_PIXELS:,} read (refused "
            "before decoding)",
        ) from None
    except Exception as e:  # noqa: BLE001 - Pillow raises OSError, ValueError, ... on bad headers
        raise BadImageError(name, f"cannot open: {e}") from None
    if im.format not in _FORMATS:
        raise BadImageError(name, f"{im.format} images are not read ({formats_read()})")
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise BadImageError(
            name,
            f"its header declares {w} x {h} pixels, more than the {MAX_PIXELS:,} read "
            "(refused before decoding)",
        )
    return im


def formats_read() -> str:
    """The extensions read, for messages: `.bmp .gif .jpeg .jpg .png .tif .tiff .webp`."""
    return "formats read: " + " ".join(sorted(READ_FORMATS))


def to_array(im, channels: int) -> np.ndarray:
    """The decoded pixels of a Pillow image as uint8 (H, W, channels).

    Conversions: grey <-> RGB (ITU-R 601 luma for RGB -> grey), alpha dropped (as torchvision's
    loader does), CMYK and palette images to RGB, 16-bit images scaled to 8 bits (Pillow's own
    `convert` would clip them at 255), float images on 0..1 scaled to 0..255, the EXIF orientation
    applied; an animated image gives its first frame.

    Raises:
        BadImageError: a truncated or corrupt file, or one Pillow cannot convert.
    """
    from PIL import ImageOps

    try:
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in _SIXTEEN_BIT or im.mode == "F":
            a = np.asarray(im, np.float64)
            if im.mode in _SIXTEEN_BIT:  # PNG / TIFF 16-bit samples are 0..65535
                a = a / 257.0
            elif a.size and a.max() <= 1.0:  # float images are usually on 0..1
                a = a * 255.0
            grey = np.clip(np.round(a), 0, 255).astype(np.uint8)[..., None]
            return np.repeat(grey, 3, axis=-1) if channels == 3 else grey
        target = "L" if channels == 1 else "RGB"
        if im.mode != target:
            im = im.convert(target)
        out = np.asarray(im, np.uint8)
    except Exception as e:  # noqa: BLE001 - Pillow's errors for broken data are of many types
        raise BadImageError(getattr(im, "filename", "") or "image", f"cannot decode: {e}") from None
    return out[..., None] if channels == 1 else out


def read_image(path: Any, channels: int) -> np.ndarray:
    """uint8 (H, W, channels) pixels of the image file `path` (see `to_array`).

    Raises:
        BadImageError: the file is missing, not an image read here, too large, truncated or corrupt.
    """
    p = epath.Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise BadImageError(path, f"cannot read the file ({e.strerror or e})") from None
    im = open_image(data, path)
    im.filename = str(path)
    return to_array(im, channels)


# ---------------------------------------------------------------------------------------------------
# The folder: layout, files, split.


@dataclasses.dataclass(frozen=True)
class Listing:
    """The files of a folder dataset, before anything is decoded.

    Attributes:
        root: the folder.
        layout: "classes" (PATH/<class>/...) or "splits" (PATH/train/<class>/... + a val folder).
        class_names: sorted class folder names.
        train / val: relative paths (under `root`) of the image files; `val` is empty for the
            "classes" layout until a share is held out.
        skipped: relative paths of files that are not images by their extension.
        val_dir: the validation folder's name ("" without one).
    """

    root: str
    layout: str
    class_names: tuple[str, ...]
    train: tuple[str, ...]
    val: tuple[str, ...]
    skipped: tuple[str, ...]
    val_dir: str = ""

    def label(self, relpath: str) -> int:
        parts = relpath.split("/")
        return self.class_names.index(parts[1] if self.layout == "splits" else parts[0])

    @property
    def fingerprint(self) -> str:
        """A digest of every image's relative path and size: what a resume checks is unchanged."""
        h = hashlib.sha256()
        root = epath.Path(self.root)
        for rel in sorted(self.train + self.val):
            try:
                size = (root / rel).stat().length
            except OSError:  # a broken link: stays broken (and left out) or is fixed (a change)
                size = -1
            h.update(f"{rel}\t{size}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()[:16]


def _visible(p: epath.Path) -> bool:
    return not p.name.startswith(".")


def _walk_files(d: epath.Path, _seen: set[str] | None = None) -> list[epath.Path]:
    """Every file under `d` (recursively, sorted, hidden names left out). Links to folders are
    followed once each: a link back to a parent does not loop."""
    seen = set() if _seen is None else _seen
    key = str(d) if "://" in str(d) else os.path.realpath(str(d))
    if key in seen:
        return []
    seen.add(key)
    out = []
    for p in sorted(d.iterdir(), key=lambda p: p.name):
        if not _visible(p):
            continue
        if p.is_dir():
            out.extend(_walk_files(p, seen))
        else:
            out.append(p)
    return out


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as lone surrogates
        return False


def _is_image_name(p: epath.Path) -> bool:
    return p.suffix.lower() in READ_FORMATS


def _few(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _classes(d: epath.Path, root: epath.Path) -> tuple[dict[str, list[str]], list[str]]:
    """{class name: image relpaths} and the skipped relpaths of a folder of class folders."""
    children = [p for p in sorted(d.iterdir(), key=lambda p: p.name) if _visible(p)]
    dirs = [p for p in children if p.is_dir()]
    files = [p for p in children if not p.is_dir()]
    if not children:
        raise FolderError(
            f"{d} is empty: put each class's images in a folder of its own, {d}/<class>/<image>"
        )
    if not dirs:
        kind = "images" if any(_is_image_name(p) for p in files) else "files"
        raise FolderError(
            f"{d} holds {kind}, not class folders: put each class's images in a folder named "
            f"after the class, {d}/<class>/<image> (e.g. {d}/cat/1.jpg, {d}/dog/2.jpg)"
        )

    def rel(p: epath.Path) -> str:
        return str(p)[len(str(root)) :].lstrip("/")

    classes: dict[str, list[str]] = {}
    skipped = [rel(p) for p in files]
    empty = []
    for c in dirs:
        found = _walk_files(c)
        images = [rel(p) for p in found if _is_image_name(p)]
        skipped += [rel(p) for p in found if not _is_image_name(p)]
        if not images:
            empty.append(f"{c.name} ({len(found)} other files)" if found else c.name)
        classes[c.name] = images
    if empty:
        raise FolderError(
            f"class folders without images in {d}: {_few(empty)} ({formats_read()}); add images "
            "or remove the folders"
        )
    return classes, skipped


def list_folder(root: Any) -> Listing:
    """Reads the layout and the file names of a folder dataset (nothing is decoded).

    Raises:
        FolderError: no such folder, an empty one, images where class folders belong, a class
            folder without images, fewer than two classes, validation classes unknown to train.
    """
    root = epath.Path(root)
    if not root.exists():
        raise FolderError(f"no such folder: {root}")
    if not root.is_dir():
        raise FolderError(f"{root} is a file; --dataset=folder: needs a folder of class folders")
    dirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and _visible(p)}
    val_key = next((v for v in VAL_DIRS if v in dirs), "")
    val_dir = dirs[val_key].name if val_key else ""
    # The split layout only when every folder at the top is a split (a class may be named
    # "train" or "test" in a folder of classes); split names in any case (Train/, VAL/).
    splits = TRAIN_DIR in dirs and set(dirs) <= {TRAIN_DIR, *VAL_DIRS}
    if splits:
        train, skipped = _classes(dirs[TRAIN_DIR], root)
        val: dict[str, list[str]] = {}
        if val_dir:
            val, more = _classes(dirs[val_key], root)
            skipped += more
            unknown = sorted(set(val) - set(train))
            if unknown:
                raise FolderError(
                    f"{root / val_dir} has classes that {dirs[TRAIN_DIR]} has not: {_few(unknown)}"
                )
        layout = "splits"
    else:
        train, skipped = _classes(root, root)
        val, layout, val_dir = {}, "classes", ""
        nested = [c for c in train if all("/" in r[len(c) + 1 :] for r in train[c])]
        if len(nested) == len(train):
            raise FolderError(
                f"every class folder of {root} holds its images in subfolders only "
                f"({', '.join(sorted(nested)[:3])}): if these are splits, name them train/ and "
                "val/; if the subfolders are the classes, pass the folder one level down"
            )
    # TensorFlow's strings are UTF-8: a name in another encoding (an old zip's) is refused here,
    # named, rather than failing inside the input pipeline.
    odd = [r for rs in (*train.values(), *val.values()) for r in rs if not _utf8(r)]
    if odd:
        raise FolderError(
            f"file names in {root} that are not UTF-8: {_few([ascii(r) for r in odd], 3)}; "
            "rename them (e.g. convmv -f latin1 -t utf8)"
        )
    class_names = tuple(sorted(train))
    if len(class_names) < 2:
        raise FolderError(
            f"{root} has one class folder ({class_names[0]}): a classifier needs at least two"
        )
    return Listing(
        root=str(root),
        layout=layout,
        class_names=class_names,
        train=tuple(r for c in class_names for r in train[c]),
        val=tuple(r for c in class_names for r in val.get(c, [])),
        skipped=tuple(skipped),
        val_dir=val_dir,
    )


def hold_out(listing: Listing, val_fraction: float, seed: int = VAL_SEED) -> Listing:
    """`listing` with `val_fraction` of every class moved to `val` (stratified, seeded).

    Each class of n >= 2 images gives round(n * val_fraction) of them, at least one and at most
    n - 1; a class of one image stays in train.
    """
    if not 0.0 < val_fraction < 1.0:
        raise FolderError(f"--val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[str]] = {}
    for rel in listing.train:
        by_class.setdefault(listing.label(rel), []).append(rel)
    train, val = [], []
    for c in range(len(listing.class_names)):
        files = by_class.get(c, [])
        n = len(files)
        k = 0 if n < 2 else min(max(round(n * val_fraction), 1), n - 1)
        chosen = set(rng.permutation(n)[:k].tolist())
        val += [f for i, f in enumerate(files) if i in chosen]
        train += [f for i, f in enumerate(files) if i not in chosen]
    return dataclasses.replace(listing, train=tuple(train), val=tuple(val))


# ---------------------------------------------------------------------------------------------------
# Inspection: every image opened once; what the run records.


@dataclasses.dataclass
class FolderRecord:
    """What a run knows of its folder dataset (saved as the run's `dataset.json`).

    Attributes:
        name: `folder:<absolute path>`.
        layout / val_dir / val_fraction: how the split was made ("held out" when val_fraction).
        class_names: sorted class names (label i is class_names[i]).
        train / val: relative paths of the images of each split, in label order.
        channels: 1 when every image is grey (and no RGB weights are fine-tuned), else 3.
        image_shape: (H, W, C), H / W None when the images differ in size.
        mean / std: per-channel normalisation on the 0..1 scale.
        stats_source: where mean / std come from ("measured on the train split", ...).
        fingerprint: `Listing.fingerprint` of the folder when the run started.
        conversions: {what: count} of the images converted when read (e.g. "RGBA -> RGB").
        skipped: relative paths of the non-image files left out.
        bad: {relative path: reason} of the images left out (`skip_bad_images`).
    """

    name: str
    layout: str
    class_names: list[str]
    train: list[str]
    val: list[str]
    channels: int
    image_shape: list[int | None]
    mean: list[float]
    std: list[float]
    stats_source: str
    fingerprint: str
    val_dir: str = ""
    val_fraction: float | None = None
    conversions: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: list[str] = dataclasses.field(default_factory=list)
    bad: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "FolderRecord":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in fields})

    def labels(self, split: str) -> np.ndarray:
        files = self.train if split == "train" else self.val
        at = 1 if self.layout == "splits" else 0
        index = {c: i for i, c in enumerate(self.class_names)}
        return np.asarray([index[f.split("/")[at]] for f in files], np.int64)

    def counts(self, split: str) -> list[int]:
        return np.bincount(self.labels(split), minlength=len(self.class_names)).tolist()

    def summary(self) -> list[str]:
        """Lines for the run's output: classes with counts, the split, conversions, skips."""
        root = self.name[len(PREFIX) :]
        tr, va = self.counts("train"), self.counts("val")
        lines = [
            f"Folder dataset {root}: {len(self.class_names)} classes, {len(self.train)} train / "
            f"{len(self.val)} val images."
        ]
        width = max(len(c) for c in self.class_names)
        lines += [
            f"  {c:<{width}}  {a:>6} train  {b:>6} val"
            for c, a, b in zip(self.class_names, tr, va, strict=True)
        ]
        if self.val_fraction is not None:
            lines.append(
                f"Validation: {self.val_fraction:.0%} of each class held out (stratified, seed "
                f"{VAL_SEED}; no {'/'.join(VAL_DIRS)} folder)."
            )
        else:
            lines.append(f"Validation: the {self.val_dir}/ folder.")
        shape = "x".join("?" if s is None else str(s) for s in self.image_shape[:2])
        lines.append(
            f"Images: {shape} pixels, {self.channels} channel{'s' if self.channels > 1 else ''}; "
            f"mean {_fmt(self.mean)}, std {_fmt(self.std)} ({self.stats_source})."
        )
        if self.conversions:
            lines.append(
                "Converted when read: "
                + ", ".join(f"{n} {k}" for k, n in sorted(self.conversions.items()))
                + "."
            )
        if self.skipped:
            lines.append(
                f"Skipped {len(self.skipped)} files that are not images ({formats_read()}): "
                f"{_few(self.skipped)}."
            )
        if self.bad:
            lines.append(
                f"Left out {len(self.bad)} unreadable images: "
                + _few([f"{k} ({v})" for k, v in self.bad.items()], 3)
                + "."
            )
        return lines


def _fmt(xs) -> str:
    return "(" + ", ".join(f"{x:.4f}" for x in xs) + ")"


def _header(root: epath.Path, rel: str) -> tuple[str, str, tuple[int, int]] | BadImageError:
    """(format, mode, size) from the header of one file, or the error that refuses it."""
    try:
        path = root / rel
        with path.open("rb") as f:
            data = f.read()
        im = open_image(data, rel)
        return im.format, im.mode, im.size
    except BadImageError as e:
        return e
    except Exception as e:  # noqa: BLE001 - whatever fails here refuses this file, named
        return BadImageError(rel, f"cannot read the file ({e})")


def _conversion(mode: str, fmt: str, channels: int) -> str | None:
    if mode in _SIXTEEN_BIT:
        return "16-bit -> 8-bit" + (" RGB" if channels == 3 else " grey")
    if channels == 1:
        return None if mode == "L" else f"{mode} -> grey"
    if mode == "RGB":
        return None
    if mode in ("RGBA", "LA", "PA"):
        return f"{mode} -> RGB (alpha dropped)"
    return f"{'grey' if mode in _GREY_MODES else mode} -> RGB"


def inspect(
    listing: Listing,
    *,
    val_fraction: float | None = 0.2,
    channels: int | None = None,
    stats: tuple[tuple[float, ...], tuple[float, ...], str] | None = None,
    skip_bad_images: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> FolderRecord:
    """Opens every image of `listing` once and returns the dataset's `FolderRecord`.

    Args:
        listing: from `list_folder`.
        val_fraction: share of each class held out when the folder has no validation folder
            (ignored when it has one).
        channels: 1 or 3; None: 1 when every image is grey, else 3.
        stats: (mean, std, where they come from) to use instead of measuring them on the train
            split (e.g. ImageNet's, when fine-tuning published weights).
        skip_bad_images: leave out unreadable images (listed in the record) instead of refusing
            the dataset.
        progress: show a progress bar.
        workers: decoding threads (default: the CPU count, at most 8).

    Raises:
        FolderError: unreadable images (the first few listed, with why), unless skipped; a split
            left without images.
    """
    from tqdm import tqdm

    val_fraction = 0.2 if val_fraction is None else val_fraction
    root = epath.Path(listing.root)
    files = list(listing.train + listing.val)
    workers = workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        headers = dict(
            zip(
                files,
                tqdm(
                    pool.map(lambda r: _header(root, r), files),
                    total=len(files),
                    desc="checking images",
                    unit="img",
                    disable=not progress,
                    dynamic_ncols=True,
                ),
                strict=True,
            )
        )
    bad = {r: h.reason for r, h in headers.items() if isinstance(h, BadImageError)}
    good = {r: h for r, h in headers.items() if not isinstance(h, BadImageError)}
    if channels is None:
        channels = 1 if good and all(m in _GREY_MODES for _, m, _ in good.values()) else 3

    def decode(rel: str):
        """(height, width, per-channel histograms (C, 256)) of one image, or its error: the
        worker keeps the decoded pixels, so that memory holds a few images, not the dataset."""
        try:
            im = open_image((root / rel).read_bytes(), rel)
            im.filename = rel
            a = to_array(im, channels)
        except BadImageError as e:
            return BadImageError(rel, e.reason)
        except Exception as e:  # noqa: BLE001 - a read that fails refuses this file, named
            return BadImageError(rel, f"cannot read the file ({e})")
        hist = np.stack([np.bincount(a[..., c].ravel(), minlength=256) for c in range(channels)])
        return a.shape[0], a.shape[1], hist

    # Per-file histograms (exact integer counts, 256 values per channel): the statistics are
    # taken over the train split once it is final (the held-out share is chosen after the
    # unreadable files are known), without decoding twice.
    per_file: dict[str, np.ndarray] = {}
    sizes: set[tuple[int, int]] = set()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        todo = list(good)
        for rel, out in zip(
            todo,
            tqdm(
                pool.map(decode, todo),
                total=len(todo),
                desc="decoding images",
                unit="img",
                disable=not progress,
                dynamic_ncols=True,
            ),
            strict=True,
        ):
            if isinstance(out, BadImageError):
                bad[rel] = out.reason
                continue
            sizes.add(out[:2])
            per_file[rel] = out[2]
    if bad and not skip_bad_images:
        raise FolderError(
            f"{len(bad)} of {len(files)} images in {root} cannot be used: "
            + _few([f"{k} ({v})" for k, v in sorted(bad.items())], 3)
            + "; fix or remove them, or train with --config.skip_bad_images=True to leave them out"
        )
    kept = dataclasses.replace(
        listing,
        train=tuple(r for r in listing.train if r not in bad),
        val=tuple(r for r in listing.val if r not in bad),
    )
    held_out = not listing.val_dir  # no val/ folder: a share of each class is held out
    if held_out:
        kept = hold_out(kept, val_fraction)
    if not kept.train or not kept.val:
        raise FolderError(f"{root}: no {'train' if not kept.train else 'validation'} images left")
    if stats is None:
        hist = sum(per_file[r] for r in kept.train).astype(np.float64)  # (C, 256)
        values = np.arange(256) / 255.0
        pixels = hist.sum(1)
        mean = hist @ values / pixels
        std = np.sqrt(np.maximum(hist @ (values * values) / pixels - mean * mean, 1e-12))
        stats = (tuple(mean.tolist()), tuple(std.tolist()), "measured on the train split")
    conversions = Counter(
        c
        for r, (fmt, mode, _) in good.items()
        if r not in bad and (c := _conversion(mode, fmt, channels))
    )
    shape = next(iter(sizes)) if len(sizes) == 1 else (None, None)
    return FolderRecord(
        name=PREFIX + listing.root,
        layout=listing.layout,
        class_names=list(listing.class_names),
        train=list(kept.train),
        val=list(kept.val),
        channels=channels,
        image_shape=[shape[0], shape[1], channels],
        mean=[float(x) for x in stats[0]],
        std=[float(x) for x in stats[1]],
        stats_source=stats[2],
        fingerprint=listing.fingerprint,
        val_dir=listing.val_dir,
        val_fraction=float(val_fraction) if held_out else None,
        conversions=dict(conversions),
        skipped=list(listing.skipped),
        bad=dict(sorted(bad.items())),
    )
