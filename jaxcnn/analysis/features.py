"""The feature space of a trained run: its network, weights and data, and one tap per image.

`load_run(workdir)` gives a run's model, variables and data settings (architecture, dataset and
resolution from its `config.json`; weights from the latest or the best checkpoint);
`split_features(run, split, tap)` computes one named tap of `model.features(x)` (default
`pre_logits`, the classifier's input: AlexNet's fc7, ResNet's pooled last stage) for every example
of a split in eval mode; `extract_features(model, variables, images, tap)` does the same for
arrays already in memory; `available_taps(...)` lists a network's taps with their shapes. Spatial
taps (N, H, W, C) are global-average-pooled to (N, C). The command `python -m jaxcnn.features`
saves them as an `.npz`.
"""

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from jaxcnn import rundir

# Only light imports at module level (numpy, and Orbax through rundir): the commands that import
# this module pay for JAX's backends and TensorFlow only when they use them.

CHECKPOINTS = rundir.SERIES


# A run directory that cannot be used (missing, not a run, no checkpoint), or an unknown tap.
RunError = rundir.RunDirError


@dataclasses.dataclass
class Run:
    """A trained run, ready to apply.

    Attributes:
        workdir: the run directory.
        arch: canonical architecture name.
        config: the run's `config.json`.
        dataset: the dataset's `jaxcnn.data.DatasetInfo`.
        image_size: the side the network was trained at (and is evaluated at).
        model: the linen module (eval mode is chosen at apply time).
        variables: `{"params": ..., "batch_stats": ...}` (no `batch_stats` without BatchNorm).
        step: the training step of the restored checkpoint.
        checkpoint: "latest" or "best".
    """

    workdir: Any
    arch: str
    config: dict[str, Any]
    dataset: Any
    image_size: int
    model: Any
    variables: dict[str, Any]
    step: int
    checkpoint: str

    @property
    def channels(self) -> int:
        return self.dataset.image_shape[-1]


def read_run_config(workdir: rundir.PathLike) -> dict[str, Any]:
    """The `config.json` of a run directory; RunError if the directory or the file is missing."""
    return rundir.RunDir(workdir).read_config()


def load_run(
    workdir: rundir.PathLike,
    checkpoint: str = "latest",
    *,
    data_dir: str | None = None,
    weights: str = "raw",
) -> Run:
    """Loads a run's model and weights (on this host's first device, whatever trained it).

    Args:
        workdir: a directory written by `python -m jaxcnn.train`.
        checkpoint: "latest" (the newest save) or "best" (best validation accuracy).
        data_dir: TFDS data dir; None: the one in the run's config.
        weights: "raw" (the trained weights) or "ema" (their moving average, for runs trained
            with `--config.ema_decay`).

    Raises:
        RunError: missing directory, config or checkpoint (the message says which).
        jaxcnn.UnknownModelError: an architecture this version does not know.
    """
    from jaxcnn import data
    from jaxcnn.models import create_model, get_model_info
    from jaxcnn.training.plan import DTYPES, image_size_for

    if checkpoint not in CHECKPOINTS:
        raise RunError(f"unknown checkpoint {checkpoint!r}; valid: {', '.join(CHECKPOINTS)}")
    run = rundir.RunDir(workdir)
    cfg = run.read_config()
    arch = get_model_info(cfg["arch"]).name
    if not run.has_checkpoint(checkpoint):  # before anything touches the directory
        raise RunError(
            f"no {checkpoint} checkpoint in {run.path / rundir.CHECKPOINTS / checkpoint}"
        )
    saved = run.read_dataset()  # a folder dataset: its record, so that the folder is not needed
    if saved is not None:
        info = data.folder_info(data.folder.FolderRecord.from_json(saved))
    else:
        info = data.dataset_info(cfg["dataset"], data_dir or cfg.get("data_dir"))
    image_size = image_size_for(arch, cfg.get("image_size"), info)
    model = create_model(
        arch,
        num_classes=info.num_classes,
        dtype=DTYPES[cfg.get("dtype", "float32")],
        **(cfg.get("arch_options") or {}),
    )
    variables, step = run.restore_variables(checkpoint, weights)
    return Run(run.path, arch, cfg, info, image_size, model, variables, step, checkpoint)


def available_taps(model: Any, image_size: int, channels: int) -> dict[str, tuple[int, ...]]:
    """Name -> per-example shape of every tap of `model.features` (traced, nothing computed)."""
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    taps = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, method=model.features), variables, x
    )
    return {
        name: tuple(a.shape[1:])
        for name, a in taps.items()
        if hasattr(a, "shape") and len(a.shape) >= 2
    }


def check_tap(taps: dict[str, tuple[int, ...]], tap: str) -> None:
    """RunError naming the available taps (with their shapes) unless `tap` is one of them."""
    if tap not in taps:
        listing = ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in taps.items())
        raise RunError(f"unknown tap {tap!r}; this network's taps are: {listing}")


def pooled_dim(shape: tuple[int, ...]) -> tuple[int, bool]:
    """(feature dimension, whether global-average-pooled) of a tap of per-example `shape`."""
    if len(shape) == 3:  # (H, W, C): global average pool
        return shape[-1], True
    return math.prod(shape), False


def make_feature_fn(model: Any, tap: str) -> Callable:
    """A jitted `(variables, images (B, H, W, C)) -> float32 (B, D)`: the tap in eval mode, spatial
    taps global-average-pooled, other ranks flattened."""
    import jax
    import jax.numpy as jnp

    def fn(variables, images):
        out = model.apply(variables, images, train=False, method=model.features)[tap]
        out = out.astype(jnp.float32)
        if out.ndim == 4:
            return out.mean(axis=(1, 2))
        return out.reshape(out.shape[0], -1)

    return jax.jit(fn)


def collect(
    fn: Callable,
    variables: dict[str, Any],
    batches: Iterable[dict[str, np.ndarray]],
    total: int,
    *,
    desc: str = "features",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Runs `fn` over padded batches (`image`, `label`, `mask` 1 for real examples, first in each
    batch) and gathers the real rows.

    Returns:
        (features float32 (total, D), labels int32 (total,)).

    Raises:
        RuntimeError: the batches held a number of real examples other than `total`.
    """
    from tqdm import tqdm

    feats: np.ndarray | None = None
    labels = np.zeros((total,), np.int32)
    n = 0
    with tqdm(total=total, desc=desc, unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for batch in batches:
            real = int(np.sum(batch["mask"]))
            if not real:
                continue
            out = np.asarray(fn(variables, batch["image"]))[:real]
            if feats is None:  # one allocation: (N, D) float32 is the largest array here
                feats = np.zeros((total, out.shape[1]), np.float32)
            if n + real > total:
                raise RuntimeError(f"the split has more than the {total} examples expected")
            feats[n : n + real] = out
            labels[n : n + real] = batch["label"][:real]
            n += real
            bar.update(real)
    if n != total or feats is None:
        raise RuntimeError(f"computed features of {n} examples, expected {total}")
    return feats, labels


def array_batches(
    images: np.ndarray, batch_size: int, labels: np.ndarray | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-size batches of an in-memory array, the last one zero-padded (mask 0): one compile."""
    n = len(images)
    labels = np.zeros((n,), np.int32) if labels is None else labels
    for start in range(0, n, batch_size):
        x = images[start : start + batch_size]
        real = len(x)
        mask = np.zeros((batch_size,), np.float32)
        mask[:real] = 1.0
        if real < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - real, *x.shape[1:]), x.dtype)])
        y = np.zeros((batch_size,), np.int32)
        y[:real] = labels[start : start + real]
        yield {"image": x, "label": y, "mask": mask}


def extract_features(
    model: Any,
    variables: dict[str, Any],
    images: np.ndarray,
    tap: str = "pre_logits",
    batch_size: int = 256,
    *,
    progress: bool = False,
) -> np.ndarray:
    """Computes a tap of `model.features` for every image, in eval mode.

    Args:
        model: a jaxcnn classifier (any linen module with a `features(x, train=...)` method
            returning a dict of taps).
        variables: its `{"params", "batch_stats"}`.
        images: float32 (N, H, W, C), preprocessed as the network was trained (normalised).
        tap: the tap's name (`pre_logits`, `stage3`, ...).
        batch_size: images per jitted call; the last batch is padded to it.
        progress: show a tqdm bar.

    Returns:
        float32 (N, D): the tap of each image; spatial taps (N, H, W, C) are global-average-pooled
        to (N, C), other ranks flattened.

    Raises:
        RunError: `tap` is not one of the network's taps (the message lists them).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C); got shape {images.shape}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    check_tap(available_taps(model, images.shape[1], images.shape[3]), tap)
    if len(images) == 0:
        raise ValueError("no images")
    fn = make_feature_fn(model, tap)
    feats, _ = collect(
        fn, variables, array_batches(images, batch_size), len(images), progress=progress
    )
    return feats


def split_name(info: Any, split: str) -> str:
    """The dataset's split for `--split=train|test` (`test`: its evaluation split)."""
    return info.train_split if split == "train" else info.eval_split


def split_size(info: Any, split: str) -> int:
    return info.num_train if split == "train" else info.num_eval


def split_batches(run: Run, split: str, batch_size: int, data_dir: str | None = None):
    """Padded, eval-preprocessed batches of a whole split of the run's dataset (fixed order)."""
    from jaxcnn import data

    return data.eval_batches(
        run.dataset,
        global_batch=batch_size,
        image_size=run.image_size,
        data_dir=data_dir or run.config.get("data_dir"),
        split=split_name(run.dataset, split),
    )


def split_features(
    run: Run,
    split: str,
    tap: str = "pre_logits",
    batch_size: int = 256,
    *,
    data_dir: str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 (N, D), labels int32 (N,)) of every example of a split, in dataset order."""
    fn = make_feature_fn(run.model, tap)
    return collect(
        fn,
        run.variables,
        split_batches(run, split, batch_size, data_dir),
        split_size(run.dataset, split),
        desc=f"{tap} of {run.dataset.name}/{split_name(run.dataset, split)}",
        progress=progress,
    )


def save_npz_atomic(path: rundir.PathLike, **arrays: Any) -> None:
    """`np.savez` through a temporary file and a rename: never a half-written file."""
    with (
        rundir.atomic_path(path) as tmp,
        tmp.open("wb") as f,
    ):  # a file object: savez adds no suffix
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
