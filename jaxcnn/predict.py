"""Classify images: `python -m jaxcnn.predict --workdir=runs/x photo.jpg more_photos/`.

Prints, for each image (files, or folders searched recursively for .jpg .jpeg .png .bmp .gif .webp
.tif .tiff), the `--top_k` most probable classes with their names and probabilities, as a table,
CSV or JSON (`--format`), on stdout or into `--output`. The network is a trained run's (`--workdir`,
its latest or `--checkpoint=best` weights, with the run's own eval transform and class names) or
published weights (`--weights=torchvision:resnet50`, `timm:...`, once in the weights cache, with the
zoo entry's resize, crop, interpolation and mean / std, and the ImageNet class names).

Images are read as the trainer reads a folder dataset: grey / RGBA / CMYK / 16-bit images are
converted, and a file that is not an image, is truncated, or declares an absurd size is reported
on stderr in one line (the others are still classified; exit status 1). The library behind it is
`jaxcnn.serving.Classifier`.
"""

import csv
import io
import json
import sys

from absl import flags

from jaxcnn import cli

POSITIONAL = True  # the images


def define_flags(fv: flags.FlagValues) -> cli.Flags:
    d = cli.definers(fv)
    run = cli.define_run_flags(fv, batch_size=False, weights=False)
    run["batch_size"] = d.integer("batch_size", 32, "Images per forward pass.")
    return cli.Flags(
        **run,
        weights=d.string(
            "weights",
            None,
            "Published weights instead of a run: torchvision:NAME, timm:NAME or a jaxcnn name "
            "(its default torchvision weights); they must be in the weights cache or fetchable. "
            "With --workdir: raw (default) or ema, the run's EMA weights.",
        ),
        top_k=d.integer("top_k", 5, "How many classes to show per image."),
        format=d.enum("format", "table", ["table", "csv", "json"], "Output format."),
        output=d.string("output", None, "Write the predictions to this file (default: stdout)."),
    )


def render(predictions, fmt: str) -> str:
    """The predictions as a table, CSV (one row per image and rank; an unreadable image has one
    row with its error) or JSON (a list; `error` set for an unreadable image). The table leaves
    unreadable images to the error lines on stderr."""
    if fmt == "json":
        return json.dumps([p.to_json() for p in predictions], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image", "rank", "class", "index", "probability", "error"])
        for p in predictions:
            if p.error:  # the image stays in the file, with why it has no classes
                w.writerow([p.source, "", "", "", "", p.error])
            for r, (c, i, q) in enumerate(zip(p.classes, p.indices, p.probabilities, strict=True)):
                w.writerow([p.source, r + 1, c, i, f"{q:.6f}", ""])
        return buf.getvalue()
    lines = []
    for p in predictions:
        if p.error:
            continue
        top = "  ".join(f"{c} {q:.1%}" for c, q in zip(p.classes, p.probabilities, strict=True))
        lines.append(f"{p.source}\t{top}")
    return "\n".join(lines) + ("\n" if lines else "")


def main(argv: list[str], f: cli.Flags) -> int:
    images = argv[1:]
    if not images:
        raise cli.UsageError("name one or more images or folders of images to classify")
    cli.check_positive(f, "batch_size", "top_k")
    published, which = cli.split_weights(f.workdir.value, f.weights.value)
    if f.workdir.value:
        cli.require_run(f.workdir.value)  # before JAX and TensorFlow start
    from jaxcnn import rundir

    if f.output.value:  # before the images are classified, not when the result is written
        rundir.check_writable_file(f.output.value, "--output")
    from jaxcnn.serving.classifier import Classifier, image_files

    files = image_files(images)  # a missing path is one line, before the network is loaded
    if f.workdir.value:
        clf = Classifier.from_run(
            f.workdir.value, f.checkpoint.value, data_dir=f.data_dir.value, weights=which
        )
    else:
        clf = Classifier.from_weights(published)
    predictions = clf.predict(
        files, f.top_k.value, batch_size=f.batch_size.value, progress=len(files) > 100
    )
    text = render(predictions, f.format.value)
    if f.output.value:
        rundir.write_text_atomic(f.output.value, text)
    else:
        sys.stdout.write(text)
    failed = [p for p in predictions if p.error]
    for p in failed:
        print(f"error: {p.source}: {p.error}", file=sys.stderr)
    if f.output.value:
        print(f"wrote {f.output.value}: {len(predictions) - len(failed)} images classified")
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(define_flags, main, positional=POSITIONAL)
