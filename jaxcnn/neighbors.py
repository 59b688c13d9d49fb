"""Nearest neighbours in feature space: `python -m jaxcnn.neighbors --workdir=runs/x --k=8`.

The lecture's picture of AlexNet's fc7 space for a run written by `python -m jaxcnn.train`: test
images (one per row, left) beside the training images closest to them by L2 distance between their
`pre_logits` features (nearest first; a green border for the query's label, red for another).
Writes the picture to `--output` (default `WORKDIR/neighbors_<tap>.png`, atomically) and prints the
test accuracy of a k-NN classifier on these features (majority vote of the k nearest training
images), a measure of how well the feature space separates the classes without the trained head.
For a run on a folder of images (`--dataset=folder:PATH`) the queries and their neighbours are the
user's own pictures, and their file names are printed beside the picture's rows.
The library behind it is `jaxcnn.analysis.neighbors`.
"""

from absl import flags

from jaxcnn import cli

# The library's names, importable from here as in jaxcnn 0.1.
from jaxcnn.analysis.neighbors import (  # noqa: F401
    BLOCK_ELEMENTS,
    BORDER,
    MIN_TILE_SIDE,
    NEUTRAL_COLOR,
    OTHER_LABEL_COLOR,
    QUERY_COLOR,
    QUERY_GAP,
    SAME_LABEL_COLOR,
    gather_images,
    knn_accuracy,
    knn_vote,
    nearest_neighbors,
    neighbor_grid,
    tile_side,
    to_rgb_uint8,
)


def define_flags(fv: flags.FlagValues) -> cli.Flags:
    d = cli.definers(fv)
    return cli.Flags(
        **cli.define_run_flags(fv),
        queries=d.integer("queries", 10, "Test images shown (rows of the picture)."),
        k=d.integer("k", 8, "Neighbours per query, and voters of the k-NN classifier."),
        seed=d.integer("seed", 0, "Seed of the choice of the query images."),
        tap=d.string(
            "tap", "pre_logits", "Feature space: a tap of model.features (see jaxcnn.features)."
        ),
        output=d.string("output", None, "The PNG to write; default WORKDIR/neighbors_<tap>.png."),
    )


def main(argv: list[str], f: cli.Flags) -> int:
    del argv
    cli.check_positive(f, "queries", "k", "batch_size")
    cli.require_run(f.workdir.value)  # before JAX and TensorFlow start
    import numpy as np

    from jaxcnn import rundir
    from jaxcnn.analysis import features as lib
    from jaxcnn.analysis.pictures import save_png

    tap, k, bs, data_dir = f.tap.value, f.k.value, f.batch_size.value, f.data_dir.value
    run = lib.load_run(
        f.workdir.value, f.checkpoint.value, data_dir=data_dir, weights=f.weights.value
    )
    lib.check_tap(lib.available_taps(run.model, run.image_size, run.channels), tap)
    info = run.dataset
    if k > info.num_train:
        raise cli.UsageError(f"--k={k} is more than the {info.num_train} training images")
    if f.queries.value > info.num_eval:
        raise cli.UsageError(
            f"--queries={f.queries.value} is more than the {info.num_eval} test images"
        )
    test_x, test_y = lib.split_features(run, "test", tap, bs, data_dir=data_dir)
    train_x, train_y = lib.split_features(run, "train", tap, bs, data_dir=data_dir)
    idx, _ = nearest_neighbors(train_x, test_x, k)
    acc = knn_accuracy(train_x, train_y, test_x, test_y, k, neighbors=idx)

    rng = np.random.default_rng(f.seed.value)
    queries = np.sort(rng.choice(len(test_x), size=f.queries.value, replace=False))
    q_images = gather_images(lib.split_batches(run, "test", bs, data_dir), queries)
    n_images = gather_images(lib.split_batches(run, "train", bs, data_dir), idx[queries])

    def rgb(images):
        return to_rgb_uint8(np.stack(images), info.mean, info.std)

    picture = neighbor_grid(
        rgb([q_images[int(i)] for i in queries]),
        rgb([[n_images[int(j)] for j in idx[i]] for i in queries]),
        test_y[queries],
        train_y[idx[queries]],
    )
    output = f.output.value or str(rundir.as_path(f.workdir.value) / f"neighbors_{tap}.png")
    save_png(output, picture)
    print(f"wrote {output}: {len(queries)} test images and their {k} nearest training images")
    if info.record is not None:  # a folder dataset: the user's own files, by name
        rec = info.record
        for i in queries:
            near = ", ".join(rec.train[int(j)] for j in idx[i])
            print(f"  {rec.val[int(i)]} -> {near}")
    print(
        f"k-NN accuracy (k={k}, L2 on {tap}, {train_x.shape[1]}-d) of {run.arch} at step "
        f"{run.step}: {acc:.4f} on the {len(test_x)} {info.name}/{info.eval_split} images "
        f"({len(train_x)} training images; chance {1 / info.num_classes:.4f})"
    )
    return 0


if __name__ == "__main__":
    cli.run(define_flags, main)
