"""Export a network: `python -m jaxcnn.export --workdir=runs/x --format=savedmodel --output=DIR`.

Writes a file that runs without jaxcnn (in TensorFlow, TFLite or a StableHLO runtime). Takes a
trained run (`--workdir`, its latest checkpoint or `--checkpoint=best`, with the run's own eval
transform and class names) or published weights (`--weights=torchvision:resnet50`, with the
zoo entry's preprocessing and the ImageNet class names), exactly one of the two, and writes into
`--output` (whole or not at all; a non-empty directory only with `--overwrite`):

    --format=savedmodel  a TensorFlow SavedModel: signatures serving_default (uint8 images
                         (B, S, S, C)) and serving_float (float32 pixels on 0..1), each returning
                         probabilities (B, K), class_index (B,) and class_name (B,); the class
                         names also in assets/labels.txt
    --format=tflite      model.tflite (builtin ops only; the same two signatures) and labels.txt
    --format=stablehlo   model.stablehlo (`jax.export.deserialize(...).call(pixels)`, float32
                         pixels on 0..1 -> probabilities) and model.mlir, its StableHLO text

plus `preprocessing.json` and `model.json` beside. The model normalises its input itself; resizing
and centre-cropping the image to S x S is the caller's, as `preprocessing.json` says. Any batch
size works (a symbolic batch) unless `--batch_size` fixes one; TFLite falls back to a batch of 1
where the converter needs a static batch (`model.json` says which). The library behind it is
`jaxcnn.serving.export`.
"""

import json
import pathlib

from absl import flags

from jaxcnn import cli
from jaxcnn.serving import export as exporting  # numpy only at import: JAX and TF load on use


def define_flags(fv: flags.FlagValues) -> cli.Flags:
    d = cli.definers(fv)
    return cli.Flags(
        # The run flags are defined here, not by cli.define_run_flags, so that --help lists them
        # (absl's --help shows the flags of the main module only).
        workdir=d.string("workdir", None, "Run directory written by jaxcnn.train (or --weights)."),
        checkpoint=d.enum(
            "checkpoint", "latest", ["latest", "best"], "With --workdir: which weights."
        ),
        data_dir=d.string("data_dir", None, "With --workdir: TFDS data dir (default: the run's)."),
        weights=d.string(
            "weights",
            None,
            "Published weights instead of a run: torchvision:NAME, timm:NAME or a jaxcnn name "
            "(its default torchvision weights); they must be in the weights cache or fetchable. "
            "With --workdir: raw (default) or ema, the run's EMA weights.",
        ),
        format=d.enum("format", None, list(exporting.FORMATS), "What to write."),
        output=d.string("output", None, "The directory to write (created; must be empty)."),
        overwrite=d.bool("overwrite", False, "Replace a non-empty --output."),
        batch_size=d.integer(
            "batch_size",
            None,
            "Fix the batch size B of the exported model; default any B (TFLite: 1 where the "
            "converter needs a static batch).",
        ),
        platforms=d.string(
            "platforms",
            "cpu,cuda,tpu",
            "savedmodel / stablehlo: the JAX platforms to lower for, comma-separated (the "
            "runtime picks its own); tflite always converts the cpu lowering.",
        ),
    )


def main(argv: list[str], f: cli.Flags) -> int:
    del argv
    published, which = cli.split_weights(f.workdir.value, f.weights.value)
    if f.format.value is None:
        raise cli.UsageError(f"--format is required: one of {', '.join(exporting.FORMATS)}")
    if not f.output.value:
        raise cli.UsageError("--output is required (the directory to write)")
    cli.check_positive(f, "batch_size")
    platforms = tuple(p.strip() for p in f.platforms.value.split(",") if p.strip())
    unknown = sorted(set(platforms) - set(exporting.PLATFORMS))
    if not platforms or unknown:
        raise cli.UsageError(
            f"--platforms takes some of {','.join(exporting.PLATFORMS)}, got {f.platforms.value!r}"
        )
    exporting.check_output_dir(f.output.value, f.overwrite.value)  # before loading anything
    from jaxcnn import rundir

    rundir.check_writable_dir(
        f.output.value, "--output"
    )  # a parent that is a file, a read-only disk
    if f.workdir.value:
        cli.require_run(f.workdir.value)  # before JAX and TensorFlow start
    from jaxcnn.serving.classifier import Classifier

    if f.workdir.value:
        classifier = Classifier.from_run(
            f.workdir.value, f.checkpoint.value, data_dir=f.data_dir.value, weights=which
        )
    else:
        classifier = Classifier.from_weights(published)
    paths = exporting.export(
        classifier,
        f.format.value,
        f.output.value,
        batch_size=f.batch_size.value,
        platforms=platforms,
        overwrite=f.overwrite.value,
    )
    size = sum(p.stat().st_size for p in paths) / 2**20
    meta = pathlib.Path(f.output.value).expanduser() / "model.json"
    meta = json.loads(meta.read_text(encoding="utf-8"))
    s, c = classifier.image_size, classifier.channels
    print(
        f"wrote {f.output.value}: {f.format.value} of {classifier.source or 'the network'}, "
        f"input ({meta['batch']}, {s}, {s}, {c}), {classifier.num_classes} classes, "
        f"{len(paths)} files, {size:.1f} MiB; resize / crop images as preprocessing.json says"
    )
    return 0


if __name__ == "__main__":
    cli.run(define_flags, main)
