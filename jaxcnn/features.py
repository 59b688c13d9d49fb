"""Features of a trained run: `python -m jaxcnn.features --workdir=runs/x --split=test`.

Loads a run directory written by `python -m jaxcnn.train` (architecture, dataset and resolution from
its `config.json`; weights from the latest checkpoint, or the best one with `--checkpoint=best`),
computes one named tap of `model.features(x)` (default `pre_logits`, the input of the classifier:
AlexNet's fc7, ResNet's pooled last stage) for every example of a split in eval mode, and writes

    features  float32 (N, D)   spatial taps (N, H, W, C) are global-average-pooled to (N, C)
    labels    int32 (N,)
    tap, arch, dataset, split, checkpoint (strings), step, image_size (ints), pooled (bool)

as an `.npz` (no pickled objects: `np.load(path)` reads it), atomically, to `--output` (default
`WORKDIR/features_<split>_<tap>.npz`). `--split=test` is the dataset's evaluation split
(`validation` where it has no `test`). The library behind it is `jaxcnn.analysis.features`.
"""

from absl import flags

from jaxcnn import cli

# The library's names, importable from here as in jaxcnn 0.1.
from jaxcnn.analysis.features import (  # noqa: F401
    CHECKPOINTS,
    Run,
    RunError,
    array_batches,
    available_taps,
    check_tap,
    collect,
    extract_features,
    load_run,
    make_feature_fn,
    pooled_dim,
    read_run_config,
    save_npz_atomic,
    split_batches,
    split_features,
    split_name,
    split_size,
)


def define_flags(fv: flags.FlagValues) -> cli.Flags:
    d = cli.definers(fv)
    return cli.Flags(
        **cli.define_run_flags(fv),
        split=d.enum(
            "split",
            "test",
            ["train", "test"],
            "Which split; `test` is the dataset's evaluation split (validation where no test).",
        ),
        tap=d.string(
            "tap",
            "pre_logits",
            "Which output of model.features(x): pre_logits (the classifier's input), logits, or "
            "a stage name (stem, stage1, conv5, ...; spatial taps are global-average-pooled). "
            "An unknown name lists the network's taps.",
        ),
        output=d.string(
            "output", None, "The .npz to write; default WORKDIR/features_<split>_<tap>.npz."
        ),
    )


def main(argv: list[str], f: cli.Flags) -> int:
    del argv
    cli.check_positive(f, "batch_size")
    cli.require_run(f.workdir.value)  # before JAX and TensorFlow start
    from jaxcnn import rundir

    if f.output.value:  # before the features are computed, not when they are saved
        rundir.check_writable_file(f.output.value, "--output")
    else:
        rundir.check_writable_dir(
            f.workdir.value, "--workdir", "pass --output=FILE.npz to write the features elsewhere"
        )

    run = load_run(
        f.workdir.value, f.checkpoint.value, data_dir=f.data_dir.value, weights=f.weights.value
    )
    taps = available_taps(run.model, run.image_size, run.channels)
    tap, split = f.tap.value, f.split.value
    check_tap(taps, tap)
    _, pooled = pooled_dim(taps[tap])
    output = f.output.value or str(rundir.as_path(f.workdir.value) / f"features_{split}_{tap}.npz")
    feats, labels = split_features(run, split, tap, f.batch_size.value, data_dir=f.data_dir.value)
    where = f"{run.dataset.name}/{split_name(run.dataset, split)}"
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
    shape = "x".join(map(str, taps[tap]))
    how = f"global-average-pooled from {shape}" if pooled else shape
    print(
        f"wrote {output}: {tap} features ({how}) of {len(feats)} {where} images, shape "
        f"{feats.shape}, {run.arch} at step {run.step} ({run.checkpoint})"
    )
    return 0


if __name__ == "__main__":
    cli.run(define_flags, main)
