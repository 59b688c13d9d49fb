"""Feature space of a trained run: `python -m jaxcnn.features --workdir=runs/x --split=test`.

Loads a run directory written by `python -m jaxcnn.train` (architecture, dataset and resolution from
its `config.json`; weights from the latest checkpoint, or the best one with `--checkpoint=best`),
computes one named tap of `model.features(x)` (default `pre_logits`, the input of the classifier:
AlexNet's fc7, ResNet's pooled last stage) for every example of a split in eval mode, and saves

    features  float32 (N, D)   spatial taps (N, H, W, C) are global-average-pooled to (N, C)
    labels    int32 (N,)
    tap, arch, dataset, split, checkpoint (strings), step, image_size (ints), pooled (bool)

as an `.npz` (no pickled objects: `np.load(path)` reads it), written atomically. `--split=test` is
the dataset's evaluation split (`validation` where it has no `test`).

Library: `load_run(workdir)` -> model, variables and data settings of a run; `extract_features(model,
variables, images, tap, batch_size)` for arrays already in memory; `available_taps(...)`.
"""

import dataclasses
import json
import math
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

# Only light imports at module level: `--help` and bad-input errors must stay fast, and the modules
# that import this one (`jaxcnn.neighbors`, `jaxcnn.visualize`) pay for JAX / TensorFlow only when
# they use them.

CHECKPOINTS = ("latest", "best")


class RunError(ValueError):
    """A run directory that cannot be used (missing, not a run, no checkpoint, unknown tap)."""


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

    workdir: Path
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


def read_run_config(workdir: str | Path) -> dict[str, Any]:
    """The `config.json` of a run directory; RunError if the directory or the file is missing."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise RunError(f"no run directory at {workdir} (train one with `python -m jaxcnn.train`)")
    path = workdir / "config.json"
    if not path.is_file():
        raise RunError(
            f"{workdir} is not a run directory: it has no config.json (written by "
            "`python -m jaxcnn.train`)"
        )
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path} is not valid JSON: {e}") from e
    missing = [k for k in ("arch", "dataset") if not cfg.get(k)]
    if missing:
        raise RunError(f"{path} lacks {', '.join(missing)}")
    return cfg


def load_run(
    workdir: str | Path, checkpoint: str = "latest", *, data_dir: str | None = None
) -> Run:
    """Loads a run's model and weights.

    Args:
        workdir: a directory written by `python -m jaxcnn.train`.
        checkpoint: "latest" (the newest save) or "best" (best validation accuracy).
        data_dir: TFDS data dir; None: the one in the run's config.

    Raises:
        RunError: missing directory, config or checkpoint (the message says which).
        jaxcnn.UnknownModelError: an architecture this version does not know.
    """
    from jaxcnn import data  # noqa: PLC0415
    from jaxcnn.training import loop as trainer  # noqa: PLC0415
    from jaxcnn.rundir import Checkpointer  # noqa: PLC0415
    from jaxcnn.models import create_model, get_model_info  # noqa: PLC0415

    if checkpoint not in CHECKPOINTS:
        raise RunError(f"unknown checkpoint {checkpoint!r}; valid: {', '.join(CHECKPOINTS)}")
    workdir = Path(workdir)
    cfg = read_run_config(workdir)
    arch = get_model_info(cfg["arch"]).name
    # Checked before the Checkpointer, which would create the directories it manages.
    ckpt_dir = workdir / "checkpoints" / checkpoint
    if not ckpt_dir.is_dir() or not any(p.name.isdigit() for p in ckpt_dir.iterdir()):
        raise RunError(f"no {checkpoint} checkpoint in {ckpt_dir}")
    info = data.dataset_info(cfg["dataset"], data_dir or cfg.get("data_dir"))
    image_size = trainer.resolve_image_size(
        types.SimpleNamespace(arch=arch, image_size=cfg.get("image_size")), info
    )
    dtype = trainer._DTYPES[cfg.get("dtype", "float32")]  # noqa: SLF001 (one table of dtypes)
    model = create_model(
        arch, num_classes=info.num_classes, dtype=dtype, **(cfg.get("arch_options") or {})
    )
    ckpt = Checkpointer(workdir)
    try:
        step = (ckpt.latest if checkpoint == "latest" else ckpt.best).latest_step()
        tree, _ = ckpt.restore(None, step, which=checkpoint)  # on this host's device
    finally:
        ckpt.close()
    variables = {"params": tree["params"]}
    if tree.get("batch_stats"):
        variables["batch_stats"] = tree["batch_stats"]
    return Run(workdir, arch, cfg, info, image_size, model, variables, int(step), checkpoint)


def available_taps(model: Any, image_size: int, channels: int) -> dict[str, tuple[int, ...]]:
    """Name -> per-example shape of every tap of `model.features` (traced, nothing computed)."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

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
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

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
    from tqdm import tqdm  # noqa: PLC0415

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
    from jaxcnn import data  # noqa: PLC0415

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


def save_npz_atomic(path: str | Path, **arrays: Any) -> None:
    """`np.savez` through a temporary file and a rename: never a half-written file."""
    from jaxcnn.rundir import atomic_path  # noqa: PLC0415

    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


# ---------------------------------------------------------------------------------------------------
# The command line. Flags are defined only when this module is the program, so that importing it
# (as `jaxcnn.neighbors` does) defines no flags.


def _define_flags() -> types.SimpleNamespace:
    from absl import flags  # noqa: PLC0415

    return types.SimpleNamespace(
        workdir=flags.DEFINE_string("workdir", None, "Run directory written by jaxcnn.train."),
        split=flags.DEFINE_enum(
            "split",
            "test",
            ["train", "test"],
            "Which split; `test` is the dataset's evaluation split (validation where no test).",
        ),
        tap=flags.DEFINE_string(
            "tap",
            "pre_logits",
            "Which output of model.features(x): pre_logits (the classifier's input), logits, or "
            "a stage name (stem, stage1, conv5, ...; spatial taps are global-average-pooled). "
            "An unknown name lists the network's taps.",
        ),
        checkpoint=flags.DEFINE_enum(
            "checkpoint", "latest", list(CHECKPOINTS), "Which weights: latest or best."
        ),
        output=flags.DEFINE_string(
            "output", None, "The .npz to write; default WORKDIR/features_<split>_<tap>.npz."
        ),
        batch_size=flags.DEFINE_integer("batch_size", 256, "Images per forward pass."),
        data_dir=flags.DEFINE_string("data_dir", None, "TFDS data dir (default: the run's)."),
    )


def main(argv: list[str], f: types.SimpleNamespace) -> int:
    if len(argv) > 1:
        print(f"error: unexpected arguments: {argv[1:]}", file=sys.stderr)
        return 2
    if not f.workdir.value:
        print("error: --workdir is required (a run directory of jaxcnn.train)", file=sys.stderr)
        return 2
    if f.batch_size.value <= 0:
        print(f"error: --batch_size must be positive, got {f.batch_size.value}", file=sys.stderr)
        return 2
    try:
        read_run_config(f.workdir.value)  # before JAX and TensorFlow start
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from absl import logging  # noqa: PLC0415

    from jaxcnn import runtime  # noqa: PLC0415

    runtime.configure_xla_cpu()
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
    from jaxcnn.data import DatasetUnavailableError  # noqa: PLC0415

    try:
        run = load_run(f.workdir.value, f.checkpoint.value, data_dir=f.data_dir.value)
        taps = available_taps(run.model, run.image_size, run.channels)
        check_tap(taps, f.tap.value)
    except (ValueError, DatasetUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tap, split = f.tap.value, f.split.value
    _, pooled = pooled_dim(taps[tap])
    output = f.output.value or str(Path(f.workdir.value) / f"features_{split}_{tap}.npz")
    feats, labels = split_features(run, split, tap, f.batch_size.value, data_dir=f.data_dir.value)
    save_npz_atomic(
        output,
        features=feats,
        labels=labels,
        tap=tap,
        arch=run.arch,
        dataset=run.dataset.name,
        split=split_name(run.dataset, split),
        checkpoint=run.checkpoint,
        step=run.step,
        image_size=run.image_size,
        pooled=pooled,
    )
    how = (
        f"global-average-pooled from {'x'.join(map(str, taps[tap]))}"
        if pooled
        else "x".join(map(str, taps[tap]))
    )
    print(
        f"wrote {output}: {tap} features ({how}) of {len(feats)} {run.dataset.name}/"
        f"{split_name(run.dataset, split)} images, shape {feats.shape}, {run.arch} at step "
        f"{run.step} ({run.checkpoint})"
    )
    return 0


if __name__ == "__main__":
    from absl import app

    _FLAGS = _define_flags()
    app.run(lambda argv: sys.exit(main(argv, _FLAGS)))
