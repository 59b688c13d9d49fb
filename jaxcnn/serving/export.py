"""A `Classifier` as a file that runs without jaxcnn: TensorFlow SavedModel, TFLite, StableHLO.

`export(classifier, fmt, output_dir)` writes one format into one directory, whole or not at all
(it is built in a temporary sibling directory and renamed into place at the end):

    savedmodel  saved_model.pb, variables/, assets/labels.txt  (tf.saved_model.load reads the
                directory; extra files beside are ignored)
    tflite      model.tflite, labels.txt
    stablehlo   model.stablehlo (`jax.export` serialization), model.mlir (its StableHLO text)

and, in every format, `preprocessing.json` (the eval transform) and `model.json` (the calling
convention: inputs, outputs, batch, class names, platforms, where the weights came from).

What is inside the exported function and what is not. Inside: uint8 -> 0..1 scaling (the uint8
signatures), the per-channel normalisation `(x - mean) / std`, the network in eval mode (BatchNorm
reads its running statistics; the weights are constants of the program, nothing can update them)
and the softmax. Not inside: decoding, and resizing / centre-cropping the image to S x S. The caller
does that, as `preprocessing.json` says (`resize_size` null: resize the whole image to S x S; a
number: resize the shorter side to it, then take the central S x S crop; `interpolation`: bilinear
or bicubic, antialiased; `Preprocess.__call__` is the reference). Resizing stays out because it
depends on each image's size and each runtime has its own image library: a fixed-size program
cannot hold it, and a resize written in graph ops would not match the antialiased reference.

The weights are closed over as constants, so the whole network is one self-contained program. The
price is that a SavedModel's graph must stay under protobuf's 2 GB, which every network of the zoo
does (VGG-19, the largest, is 0.55 GB).
"""

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = [
    "FORMATS",
    "ExportError",
    "PLATFORMS",
    "check_output_dir",
    "export",
    "export_savedmodel",
    "export_stablehlo",
    "export_tflite",
]

FORMATS = ("savedmodel", "tflite", "stablehlo")
# The SavedModel and the StableHLO artifact carry one lowering per platform, so that the file made
# on a laptop also runs on a GPU or TPU host (TensorFlow and `jax.export` pick the one of the
# device they run on).
PLATFORMS = ("cpu", "cuda", "tpu")

_NOTE = (
    "Resize / centre-crop each image to image_size x image_size before the model (resize_size"
    " null: resize the whole image; a number: resize the shorter side to it, then take the central"
    " crop), antialiased, with `interpolation`. The model itself scales uint8 to 0..1 (uint8"
    " signatures), normalises with mean / std, and applies the network and the softmax."
)


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> pathlib.Path:
    """The export directory as an absolute path, if it may be written.

    Args:
        output_dir: the directory to write (a local path).
        overwrite: whether an existing non-empty directory may be replaced.

    Raises:
        ValueError: `output_dir` is a URL, a file, or a non-empty directory and `overwrite` is
            False.
    """
    if "://" in str(output_dir):
        raise ValueError(
            f"{output_dir}: export writes a local directory; copy it to the bucket afterwards"
        )
    path = pathlib.Path(output_dir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    if not overwrite and path.is_dir() and any(path.iterdir()):
        raise ValueError(
            f"{path} exists and is not empty; choose another directory or overwrite it "
            "(--overwrite, overwrite=True)"
        )
    return path


@contextlib.contextmanager
def _atomic_dir(output_dir: str | os.PathLike, overwrite: bool) -> Iterator[pathlib.Path]:
    """Yields an empty temporary sibling of `output_dir`, renamed onto it if the block succeeds.

    A reader never sees half an export, and a failure leaves nothing behind (an old export that
    was to be overwritten stays as it was).
    """
    path = check_output_dir(output_dir, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp = path.parent / f".{path.name}.{tag}.tmp"
    old = path.parent / f".{path.name}.{tag}.old"
    tmp.mkdir()
    try:
        yield tmp
        check_output_dir(path, overwrite)  # another writer may have filled it meanwhile
        if path.is_dir():
            path.rename(old)  # a directory cannot be renamed onto a non-empty one
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            old.rename(path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_class_names(names: Sequence[str]) -> None:
    bad = [n for n in names if "\n" in n or "\r" in n]
    if bad:
        raise ValueError(f"class names cannot hold line breaks (labels.txt has one a line): {bad}")


def _preprocessing(classifier: Any) -> dict[str, Any]:
    return {**dataclasses.asdict(classifier.preprocess), "note": _NOTE}


def _write_json(path: pathlib.Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_labels(path: pathlib.Path, names: Sequence[str]) -> None:
    path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def _constant_fn(classifier: Any):
    """`pixels float32 (B, S, S, C) on 0..1 -> probabilities float32 (B, K)` with the variables as
    constants (host numpy arrays, so that they are embedded in the program, not passed in)."""
    import jax

    variables = jax.tree.map(np.asarray, dict(classifier.variables))
    probabilities = classifier.probabilities_fn()
    return lambda pixels: probabilities(variables, pixels)


def _input_shape(classifier: Any, batch_size: int | None) -> list[Any]:
    s, c = classifier.image_size, classifier.channels
    return ["b" if batch_size is None else batch_size, s, s, c]


def _signatures(batch: int | str, s: int, c: int, k: int) -> dict[str, Any]:
    outputs = {
        "probabilities": ["float32", [batch, k]],
        "class_index": ["int64", [batch]],
        "class_name": ["string", [batch]],
    }
    return {
        "serving_default": {"inputs": {"images": ["uint8", [batch, s, s, c]]}, "outputs": outputs},
        "serving_float": {
            "inputs": {"pixels": ["float32 on 0..1", [batch, s, s, c]]},
            "outputs": outputs,
        },
    }


def _tf_module(classifier: Any, batch_size: int | None, platforms: Sequence[str]):
    """The classifier as a `tf.Module` with the two serving functions (see `export_savedmodel`)."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    s, c, names = classifier.image_size, classifier.channels, classifier.class_names
    _check_class_names(names)
    shape = _input_shape(classifier, batch_size)
    # Native serialization (jax2tf's only mode): the jitted JAX program as StableHLO inside one
    # XlaCallModule op, run by TensorFlow's XLA, so TF's kernels never re-implement the network.
    probabilities_tf = jax2tf.convert(
        _constant_fn(classifier),
        with_gradient=False,
        polymorphic_shapes=[f"({', '.join(map(str, shape))})"],
        native_serialization_platforms=tuple(platforms),
    )
    module = tf.Module()
    module.class_names = tf.Variable(list(names), trainable=False, dtype=tf.string)
    # One tf.function that both signatures call: the program (and its weights) is stored once.
    module.probabilities = tf.function(
        probabilities_tf,
        input_signature=[tf.TensorSpec([batch_size, s, s, c], tf.float32)],
        autograph=False,
    )
    # The lookup reads a constant, not the Variable: the signatures hold no state to read, and the
    # TFLite converter none to freeze.
    names_const = tf.constant(list(names), dtype=tf.string)

    def outputs(probabilities):
        index = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": probabilities,
            "class_index": index,
            "class_name": tf.gather(names_const, index),
        }

    @tf.function(
        input_signature=[tf.TensorSpec([batch_size, s, s, c], tf.uint8, name="images")],
        autograph=False,
    )
    def serving_default(images):
        return outputs(module.probabilities(tf.cast(images, tf.float32) / 255.0))

    @tf.function(
        input_signature=[tf.TensorSpec([batch_size, s, s, c], tf.float32, name="pixels")],
        autograph=False,
    )
    def serving_float(pixels):
        return outputs(module.probabilities(pixels))

    module.serving_default, module.serving_float = serving_default, serving_float
    return module


def _save_tf(module, directory: pathlib.Path, names: Sequence[str]) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="jaxcnn-labels-") as d:
        labels = pathlib.Path(d) / "labels.txt"
        _write_labels(labels, names)
        module.labels = tf.saved_model.Asset(str(labels))  # copied to assets/labels.txt
        signatures = {"serving_default": module.serving_default}
        signatures["serving_float"] = module.serving_float
        tf.saved_model.save(module, str(directory), signatures=signatures)


def export_savedmodel(
    classifier: Any,
    output_dir: str | os.PathLike,
    *,
    batch_size: int | None = None,
    platforms: Sequence[str] = PLATFORMS,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Writes a TensorFlow SavedModel of `classifier` (jax2tf, native serialization).

    Signatures (`loaded.signatures[...]`, each returning a dict):
        serving_default(images uint8 (B, S, S, C)) and serving_float(pixels float32 (B, S, S, C)
        on 0..1) -> probabilities float32 (B, K), class_index int64 (B,) (the top-1 class),
        class_name string (B,) (its name, UTF-8).
    The class names are also `loaded.class_names` (a string Variable (K,)) and
    `assets/labels.txt` (one a line, in output order). Resizing to S x S is the caller's; see the
    module docstring and `preprocessing.json`.

    Args:
        classifier: a `jaxcnn.serving.Classifier`.
        output_dir: the directory to write (the SavedModel directory itself).
        batch_size: None exports any batch size B (a symbolic dimension); an int fixes B.
        platforms: the lowerings to carry (JAX platform names: cpu, cuda, tpu).
        overwrite: replace a non-empty `output_dir`.

    Returns:
        The paths written, under `output_dir`.
    """
    with _atomic_dir(output_dir, overwrite) as tmp:
        module = _tf_module(classifier, batch_size, platforms)
        _save_tf(module, tmp, classifier.class_names)
        _check_tf_runs(tmp, classifier, batch_size)
        _write_sidecars(tmp, classifier, "savedmodel", batch_size, platforms)
    return _listing(output_dir)


class ExportError(ValueError):
    """An export that cannot be made with the installed versions; the message says why."""


def _incompatible(e: Exception, symbolic: bool = True) -> ExportError:
    import jax
    import tensorflow as tf

    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    first = next((ln for ln in lines if "deserializ" in ln.lower()), lines[0] if lines else "")
    hint = (
        "a fixed batch works (--batch_size=N, batch_size=N), or use --format=stablehlo"
        if symbolic
        else "use --format=stablehlo, or the jax line this TensorFlow was built against"
    )
    return ExportError(
        f"TensorFlow {tf.__version__} cannot run the program jax {jax.__version__} serialized "
        f"({first[:200]}): jax writes StableHLO newer than an older TensorFlow reads "
        f"(a symbolic batch adds shape checks TensorFlow 2.21 cannot read from jax 0.12); {hint}"
    )


def _check_tf_runs(directory: pathlib.Path, classifier: Any, batch_size: int | None) -> None:
    """Loads the SavedModel just written and runs it once: a SavedModel that TensorFlow cannot
    execute (jax serializes StableHLO newer than an older TensorFlow can deserialize; found with
    jax 0.12 and TensorFlow 2.21) is refused instead of written."""
    import tensorflow as tf

    s, c = classifier.image_size, classifier.channels
    try:
        loaded = tf.saved_model.load(str(directory))
        loaded.signatures["serving_float"](tf.zeros((batch_size or 1, s, s, c), tf.float32))
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
        raise _incompatible(e, symbolic=batch_size is None) from None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silences file descriptor 2: the TFLite converter prints the whole MLIR module from C++ when
    it fails, and the first (symbolic batch) attempt is allowed to fail."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tflite_bytes(classifier: Any, batch_size: int | None, work: pathlib.Path) -> bytes:
    import tensorflow as tf

    saved = work / f"saved_model_{batch_size or 'b'}"
    # TFLite runs on the host (or its own delegates): the CPU lowering is the one it converts.
    _save_tf(_tf_module(classifier, batch_size, ("cpu",)), saved, classifier.class_names)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved), signature_keys=["serving_default", "serving_float"]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def export_tflite(
    classifier: Any,
    output_dir: str | os.PathLike,
    *,
    batch_size: int | None = None,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Writes a TFLite model of `classifier`, converted from its SavedModel with builtin ops only.

    `model.tflite` has the SavedModel's two signatures (`interpreter.get_signature_runner(...)`):
    serving_default(images uint8 (B, S, S, C)) and serving_float(pixels float32 (B, S, S, C) on
    0..1) -> probabilities float32 (B, K), class_index int64 (B,), class_name string (B,): TFLite's
    builtin GATHER handles the string lookup, so no select-TF op is needed. `labels.txt` beside
    holds the class names as well, one a line, for runtimes that read no string tensors.

    The batch: with `batch_size=None` a symbolic batch is tried first (the interpreter then resizes
    to any B). Where the converter cannot lower the network with a dynamic batch (the strided
    slices of the CIFAR ResNets' parameter-free shortcuts become dynamic gathers, which it does
    not support), the model is exported again with a fixed batch of 1. An int `batch_size` fixes
    B from the start. `model.json` says which ("batch": "b" or the size).

    Args:
        classifier: a `jaxcnn.serving.Classifier`.
        output_dir: the directory to write.
        batch_size: None: symbolic, else a fixed batch of 1; an int: that fixed batch.
        overwrite: replace a non-empty `output_dir`.

    Returns:
        The paths written, under `output_dir`.
    """
    # What TFLiteConverter.convert raises; TensorFlow exports it under no public name.
    from tensorflow.lite.python.convert_phase import ConverterError

    with (
        _atomic_dir(output_dir, overwrite) as tmp,
        tempfile.TemporaryDirectory(prefix="jaxcnn-tflite-") as work,
    ):
        batch = batch_size
        if batch is None:
            try:
                with _quiet_stderr():
                    flat = _tflite_bytes(classifier, None, pathlib.Path(work))
            except ConverterError:
                batch = 1
        if batch is not None:
            try:
                with _quiet_stderr():
                    flat = _tflite_bytes(classifier, batch, pathlib.Path(work))
            except ConverterError as e:
                if "deserializ" in str(e).lower():  # StableHLO newer than this TensorFlow reads
                    raise _incompatible(e, symbolic=False) from None
                first = str(e).strip().splitlines()[0][:300] if str(e).strip() else "no message"
                raise ExportError(
                    f"TFLite's converter could not convert the network ({first})"
                ) from None
        (tmp / "model.tflite").write_bytes(flat)
        _write_labels(tmp / "labels.txt", classifier.class_names)
        _write_sidecars(tmp, classifier, "tflite", batch, ("cpu",))
    return _listing(output_dir)


def export_stablehlo(
    classifier: Any,
    output_dir: str | os.PathLike,
    *,
    batch_size: int | None = None,
    platforms: Sequence[str] = PLATFORMS,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Writes `classifier` as a `jax.export` artifact: serialized StableHLO with its weights.

    `model.stablehlo` holds `exp.serialize()`: `jax.export.deserialize(data).call(pixels)` maps
    pixels float32 (B, S, S, C) on 0..1 to probabilities float32 (B, K), in any JAX process of a
    compatible version (no jaxcnn, no Flax). `model.mlir` is the same module as MLIR text, for
    reading or for other StableHLO compilers; `model.json` gives the input shape and dtype, the
    class names and the preprocessing.

    Args:
        classifier: a `jaxcnn.serving.Classifier`.
        output_dir: the directory to write.
        batch_size: None exports any batch size B (the symbolic dimension "b"); an int fixes B.
        platforms: the lowerings to carry (cpu, cuda, tpu).
        overwrite: replace a non-empty `output_dir`.

    Returns:
        The paths written, under `output_dir`.
    """
    import jax
    import jax.numpy as jnp

    shape = _input_shape(classifier, batch_size)
    if batch_size is None:
        shape[0] = jax.export.symbolic_shape("b")[0]
    with _atomic_dir(output_dir, overwrite) as tmp:
        _check_class_names(classifier.class_names)
        exp = jax.export.export(jax.jit(_constant_fn(classifier)), platforms=tuple(platforms))(
            jax.ShapeDtypeStruct(tuple(shape), jnp.float32)
        )
        (tmp / "model.stablehlo").write_bytes(exp.serialize())
        (tmp / "model.mlir").write_text(exp.mlir_module(), encoding="utf-8")
        _write_sidecars(tmp, classifier, "stablehlo", batch_size, platforms)
    return _listing(output_dir)


def _write_sidecars(
    directory: pathlib.Path,
    classifier: Any,
    fmt: str,
    batch_size: int | None,
    platforms: Sequence[str],
) -> None:
    s, c = classifier.image_size, classifier.channels
    batch = "b" if batch_size is None else batch_size
    if fmt == "stablehlo":
        calling = {
            "inputs": {"pixels": ["float32 on 0..1", [batch, s, s, c]]},
            "outputs": {"probabilities": ["float32", [batch, classifier.num_classes]]},
        }
    else:
        calling = {"signatures": _signatures(batch, s, c, classifier.num_classes)}
    preprocessing = _preprocessing(classifier)
    _write_json(directory / "preprocessing.json", preprocessing)
    _write_json(
        directory / "model.json",
        {
            "format": fmt,
            "source": classifier.source,
            "batch": batch,
            "image_size": s,
            "channels": c,
            "num_classes": classifier.num_classes,
            "platforms": list(platforms),
            **calling,
            "class_names": list(classifier.class_names),
            "preprocessing": preprocessing,
        },
    )


def _listing(output_dir: str | os.PathLike) -> list[pathlib.Path]:
    root = pathlib.Path(output_dir).expanduser().absolute()
    return sorted(p for p in root.rglob("*") if p.is_file())


def export(
    classifier: Any,
    fmt: str,
    output_dir: str | os.PathLike,
    *,
    batch_size: int | None = None,
    platforms: Sequence[str] = PLATFORMS,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Writes `classifier` in format `fmt` into `output_dir`, atomically.

    Args:
        classifier: a `jaxcnn.serving.Classifier`.
        fmt: "savedmodel", "tflite" or "stablehlo" (see `export_savedmodel`, `export_tflite`,
            `export_stablehlo` for what each writes).
        output_dir: the directory to write; it must not exist or be empty unless `overwrite`.
        batch_size: None: any batch size where the format allows (TFLite may fall back to 1);
            an int: that fixed batch.
        platforms: savedmodel and stablehlo: the JAX platforms to lower for (cpu, cuda, tpu);
            TFLite always converts the CPU lowering.
        overwrite: replace a non-empty `output_dir`.

    Returns:
        The paths of the files written, sorted.

    Raises:
        ValueError: an unknown format or platform, a bad batch size, or an output directory that
            may not be written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    platforms = tuple(platforms)
    unknown = sorted(set(platforms) - set(PLATFORMS))
    if not platforms or unknown:
        raise ValueError(
            f"platforms must be some of {', '.join(PLATFORMS)}; got {', '.join(platforms)}"
        )
    check_output_dir(output_dir, overwrite)  # before any conversion work
    if fmt == "tflite":
        return export_tflite(classifier, output_dir, batch_size=batch_size, overwrite=overwrite)
    exporter = export_savedmodel if fmt == "savedmodel" else export_stablehlo
    return exporter(
        classifier, output_dir, batch_size=batch_size, platforms=platforms, overwrite=overwrite
    )
