"""A trained network as an image classifier: pixels in, class probabilities and names out.

`Classifier.from_run(workdir)` uses a run's latest (or best) checkpoint with the run's own eval
transform and class names; `Classifier.from_weights("torchvision:resnet50")` uses published weights
with their own preprocessing (resize, centre crop, interpolation, mean / std from the zoo entry) and
the ImageNet class names shipped with the package. `predict(images)` decodes, preprocesses, batches
and applies the network (one jitted function, compiled once per batch size), returning top-k
classes with names and probabilities.
"""

import dataclasses
import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

import numpy as np
from etils import epath

from jaxcnn.data import folder

__all__ = ["Classifier", "Prediction", "Preprocess", "imagenet_class_names", "image_files"]


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the order of torchvision's and timm's classifiers
    (shipped as `jaxcnn/weights/imagenet_classes.json`, from torchvision, BSD-3-Clause)."""
    text = resources.files("jaxcnn.weights").joinpath("imagenet_classes.json").read_text()
    return tuple(json.loads(text)["names"])


def image_files(inputs: Iterable[Any]) -> list[str]:
    """The image files named by `inputs`: files as given, folders searched recursively for the
    extensions read (`jaxcnn.data.folder.READ_FORMATS`), sorted.

    Raises:
        FileNotFoundError: an input that does not exist (one line: which).
        ValueError: a folder without images.
    """
    out: list[str] = []
    for item in inputs:
        p = epath.Path(item)
        if not p.exists():
            raise FileNotFoundError(f"no such file or folder: {item}")
        if p.is_dir():
            found = sorted(
                str(f) for f in folder._walk_files(p) if f.suffix.lower() in folder.READ_FORMATS
            )
            if not found:
                raise ValueError(f"{item} holds no images ({folder.formats_read()})")
            out += found
        else:
            out.append(str(p))
    return out


@dataclasses.dataclass
class Prediction:
    """The top classes of one image.

    Attributes:
        source: the file (or "array[i]" for an array input).
        classes: class names, most probable first.
        indices: their output indices.
        probabilities: their probabilities.
        error: why the image could not be classified ("" when it was); the lists are then empty.
    """

    source: str
    classes: list[str]
    indices: list[int]
    probabilities: list[float]
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """The eval transform of a network: uint8 image (H, W, C) -> float (S, S, C).

    Attributes:
        image_size: the network's input side S.
        channels: input channels (1 grey, 3 RGB).
        mean / std: per-channel normalisation on the 0..1 scale.
        resize_size: None resizes the whole image to S x S (small fixed-size datasets, as the
            trainer evaluates them); a number resizes the shorter side to it and takes the
            central S x S crop (the trainer's S / 0.875; a zoo entry's `resize_size`).
        interpolation: "bilinear" or "bicubic" (antialiased, as PIL / torchvision resize).
        torchvision_sizes: size the resize and the crop as torchvision does (published weights).
    """

    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_size: float | None = None
    interpolation: str = "bilinear"
    torchvision_sizes: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """float32 (S, S, C) pixels on 0..1 of a uint8 (H, W, C) image (TensorFlow's antialiased
        resize, the trainer's own eval transform)."""
        from jaxcnn.data import pipeline
        from jaxcnn.data.tf import tf

        x = tf.convert_to_tensor(image)
        s = self.image_size
        if self.resize_size is None:
            if tuple(image.shape[:2]) != (s, s):
                x = tf.image.resize(x, (s, s), method=self.interpolation, antialias=True)
        else:
            x = pipeline.resize_and_crop(
                x, self.resize_size, s, self.interpolation, torchvision=self.torchvision_sizes
            )
        # A bicubic kernel overshoots; PIL (torchvision, timm) clips its results to 0..255.
        return (tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 255.0) / 255.0).numpy()


@dataclasses.dataclass
class Classifier:
    """A network in eval mode with its preprocessing and class names.

    Attributes:
        model: the linen module.
        variables: `{"params": ..., "batch_stats": ...}`.
        class_names: one name per output, in output order.
        preprocess: the eval transform (`Preprocess`).
        source: where the weights came from (a run directory or a zoo key), for messages.
    """

    model: Any
    variables: dict[str, Any]
    class_names: tuple[str, ...]
    preprocess: Preprocess
    source: str = ""

    @classmethod
    def from_run(
        cls,
        workdir: Any,
        checkpoint: str = "latest",
        *,
        data_dir: str | None = None,
        weights: str = "raw",
    ) -> "Classifier":
        """A run's network (its latest or best checkpoint) with the run's eval transform and
        class names: those its checkpoint records, so that neither the dataset nor the folder
        is needed (runs of jaxcnn before 0.2 read them from the dataset).

        Raises:
            jaxcnn.rundir.RunDirError: missing run, config or checkpoint.
        """
        from jaxcnn import rundir
        from jaxcnn.analysis.features import load_run
        from jaxcnn.data import pipeline

        data = rundir.RunDir(workdir).checkpoint_meta(checkpoint).get("data")
        if data is not None and "image_shape" in data:  # no dataset needed on this machine
            return cls._from_checkpoint(workdir, checkpoint, data, weights)
        run = load_run(workdir, checkpoint, data_dir=data_dir, weights=weights)
        info = run.dataset
        names = tuple(info.class_names) or tuple(str(i) for i in range(info.num_classes))
        small = pipeline._is_small(info)
        preprocess = Preprocess(
            image_size=run.image_size,
            channels=run.channels,
            mean=tuple(info.mean),
            std=tuple(info.std),
            resize_size=None if small else run.image_size / 0.875,
        )
        return cls(run.model, run.variables, names, preprocess, str(run.workdir))

    @classmethod
    def _from_checkpoint(
        cls, workdir: Any, checkpoint: str, data: dict[str, Any], weights: str = "raw"
    ) -> "Classifier":
        from jaxcnn import rundir
        from jaxcnn.data import DatasetInfo, pipeline
        from jaxcnn.models import create_model, get_model_info
        from jaxcnn.training.plan import DTYPES

        run = rundir.RunDir(workdir)
        cfg = run.read_config()
        names = tuple(data["class_names"])
        model = create_model(
            get_model_info(cfg["arch"]).name,
            num_classes=len(names),
            dtype=DTYPES[cfg.get("dtype", "float32")],
            **(cfg.get("arch_options") or {}),
        )
        variables, _ = run.restore_variables(checkpoint, weights)
        shape = tuple(data["image_shape"])
        info = DatasetInfo(data["dataset"], len(names), shape, "", "", 0, 0, (), ())
        preprocess = Preprocess(
            image_size=int(data["image_size"]),
            channels=int(data["channels"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            resize_size=None if pipeline._is_small(info) else data["image_size"] / 0.875,
        )
        return cls(model, variables, names, preprocess, str(run.path))

    @classmethod
    def from_weights(cls, spec: str) -> "Classifier":
        """Published weights (`torchvision:resnet50`, `timm:inception_v4`, a jaxcnn name) with
        their own preprocessing from the zoo entry and the ImageNet class names. The weights
        must be in the cache or obtainable (`jaxcnn.weights.zoo`)."""
        from jaxcnn.weights.loading import load_pretrained

        model, variables, entry = load_pretrained(spec)
        preprocess = Preprocess(
            image_size=int(entry["input_size"]),
            channels=3,
            mean=tuple(entry["mean"]),
            std=tuple(entry["std"]),
            resize_size=float(entry["resize_size"]),
            interpolation=entry.get("interpolation", "bilinear"),
            torchvision_sizes=True,
        )
        return cls(model, variables, imagenet_class_names(), preprocess, entry.get("spec", spec))

    @property
    def image_size(self) -> int:
        return self.preprocess.image_size

    @property
    def channels(self) -> int:
        return self.preprocess.channels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def probabilities_fn(self):
        """A pure `(variables, pixels float32 (B, S, S, C) on 0..1) -> float32 (B, K)` function:
        normalisation, the network in eval mode (BatchNorm reads its running statistics), softmax.
        It is what `predict` jits and what `jaxcnn.serving.export` exports."""
        import jax
        import jax.numpy as jnp

        mean = np.asarray(self.preprocess.mean, np.float32)
        std = np.asarray(self.preprocess.std, np.float32)
        model = self.model

        def fn(variables, pixels):
            x = (pixels.astype(jnp.float32) - mean) / std
            logits = model.apply(variables, x, train=False)
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

        return fn

    def _jitted(self):
        if getattr(self, "_fn", None) is None:
            import jax

            self._fn = jax.jit(self.probabilities_fn())
        return self._fn

    def probabilities(self, pixels: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Class probabilities float32 (N, K) of preprocessed pixels float32 (N, S, S, C) on 0..1,
        in fixed-size batches (the last one padded), so that the network compiles once."""
        fn = self._jitted()
        n = len(pixels)
        out = np.zeros((n, self.num_classes), np.float32)
        for i in range(0, n, batch_size):
            chunk = np.asarray(pixels[i : i + batch_size], np.float32)
            real = len(chunk)
            if real < batch_size:
                pad = np.zeros((batch_size - real, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            out[i : i + real] = np.asarray(fn(self.variables, chunk))[:real]
        return out

    def load(self, image: Any) -> np.ndarray:
        """uint8 (H, W, C) pixels of a file (checked and converted as a folder dataset's images)
        or of an array (uint8 (H, W) or (H, W, C) with 1, 3 or 4 channels).

        Raises:
            jaxcnn.data.folder.BadImageError: an unreadable, truncated or oversized image.
            ValueError: an array of another shape or dtype.
        """
        if isinstance(image, np.ndarray):
            a = image
            if (
                a.dtype != np.uint8
                or a.ndim not in (2, 3)
                or (a.ndim == 3 and a.shape[-1] not in (1, 3, 4))
            ):
                raise ValueError(
                    f"an image array must be uint8 (H, W) or (H, W, C) with C 1, 3 or 4, got "
                    f"{a.dtype} {a.shape}"
                )
            a = a[..., None] if a.ndim == 2 else a[..., :3]
            if a.shape[-1] != self.channels:
                from PIL import Image

                mode = "L" if self.channels == 1 else "RGB"
                a = np.asarray(
                    Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a).convert(mode)
                )
                a = a[..., None] if a.ndim == 2 else a
            return a
        return folder.read_image(image, self.channels)

    def predict(
        self, images: Any, top_k: int = 5, *, batch_size: int = 32, progress: bool = False
    ) -> list[Prediction]:
        """The `top_k` classes of each image.

        Args:
            images: one image or a list of them: files, folders of images (searched
                recursively), uint8 arrays (H, W) / (H, W, C), or a uint8 batch (N, H, W, C).
            top_k: classes per image (at most the class count).
            batch_size: images per forward pass; images are read, preprocessed and classified
                one batch at a time, so memory holds one batch whatever the number of images.
            progress: show a progress bar.

        An image that cannot be read gives a `Prediction` with `error` set (the others are still
        classified): one bad file does not lose the rest. A path that does not exist raises
        FileNotFoundError before anything is classified.
        """
        from tqdm import tqdm

        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        k = min(top_k, self.num_classes)
        if isinstance(images, np.ndarray):
            images = list(images) if images.ndim == 4 else [images]
        elif isinstance(images, (str, epath.PathLike)):
            images = [images]
        items: list[Any] = []
        names: list[str] = []
        for i, im in enumerate(images):
            if isinstance(im, np.ndarray):
                items.append(im)
                names.append(f"array[{i}]")
            else:
                files = image_files([im])
                items += files
                names += files
        results: list[tuple[int, Prediction]] = []  # (input position, prediction)
        bar = tqdm(total=len(items), desc="classifying", unit="img", disable=not progress)
        for start in range(0, len(items), batch_size):
            good, pixels = [], []
            for i in range(start, min(start + batch_size, len(items))):
                try:
                    pixels.append(self.preprocess(self.load(items[i])))
                    good.append(i)
                except (folder.BadImageError, ValueError) as e:
                    reason = e.reason if isinstance(e, folder.BadImageError) else str(e)
                    results.append((i, Prediction(names[i], [], [], [], error=reason)))
            if good:
                probs = self.probabilities(np.stack(pixels), batch_size)
                order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
                for row, i in enumerate(good):
                    idx = order[row]
                    results.append(
                        (
                            i,
                            Prediction(
                                names[i],
                                [self.class_names[j] for j in idx],
                                [int(j) for j in idx],
                                [float(probs[row, j]) for j in idx],
                            ),
                        )
                    )
            bar.update(min(batch_size, len(items) - start))
        bar.close()
        return [p for _, p in sorted(results, key=lambda r: r[0])]
