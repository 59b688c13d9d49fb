"""Nearest neighbours in feature space: `python -m jaxcnn.neighbors --workdir=runs/x --k=8`.

The lecture's picture of AlexNet's fc7 space: test images (one per row, left) and the training images
closest to them by L2 distance between their `pre_logits` features (left to right, nearest first).
Images that look alike in pixel space need not be neighbours here, and neighbours need not look alike
pixel by pixel: the features encode what the classifier needs. Each tile has a thin border: blue for
the query, green for a neighbour with the query's label, red for one with another label.

The program also prints the test accuracy of a k-NN classifier on these features (majority vote of
the k nearest training images, ties to the class of the nearest among the tied), a measure of how
well the feature space separates the classes without the trained classifier head.

Library: `nearest_neighbors(train_feats, query_feats, k)` (exact: every pair's distance, in chunks so
that memory stays bounded), `knn_vote(neighbor_labels)`, `knn_accuracy(...)`, `neighbor_grid(...)`.
"""

import math
import sys
import types
from pathlib import Path

import numpy as np

# Elements of one block of the (queries x training images) distance matrix: 4M float64 = 32 MiB.
BLOCK_ELEMENTS = 1 << 22
# Tile geometry of the picture (pixels).
MIN_TILE_SIDE = 64  # small images are upscaled (nearest neighbour) to at least this side
BORDER = 2  # the thin coloured frame around each tile
QUERY_GAP = 8  # extra space between the query column and its neighbours
QUERY_COLOR = (0, 90, 220)  # blue: visible on dark and light images
NEUTRAL_COLOR = (128, 128, 128)  # neighbours when labels are not given
SAME_LABEL_COLOR = (0, 170, 0)
OTHER_LABEL_COLOR = (220, 0, 0)


def nearest_neighbors(
    train_feats: np.ndarray,
    query_feats: np.ndarray,
    k: int,
    *,
    block_elements: int = BLOCK_ELEMENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """The k training points nearest to each query by L2 distance (exact, exhaustive).

    Squared distances are computed in float64 as |q|^2 - 2 q.t + |t|^2 (float32 features are exact
    in float64, so the rounding is ~1e-16 of the norms: the ranking is that of the true distances
    but for differences below that), block by block over queries and training points so that memory
    stays at `block_elements` float64 values plus the running (queries, k) best, whatever N is.

    Args:
        train_feats: (N, D) features of the training set.
        query_feats: (Q, D) features of the queries.
        k: neighbours per query, 1 <= k <= N.
        block_elements: size of one block of the distance matrix.

    Returns:
        (indices int64 (Q, k) into train_feats, distances float64 (Q, k)), nearest first; equal
        distances are ordered by index (the lower training index first).
    """
    train = np.asarray(train_feats)
    query = np.asarray(query_feats)
    if train.ndim != 2 or query.ndim != 2 or train.shape[1] != query.shape[1]:
        raise ValueError(
            f"features must be (N, D) and (Q, D) with the same D; got {train.shape} and "
            f"{query.shape}"
        )
    n, q = len(train), len(query)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the {n} training points, got {k}")
    train = train.astype(np.float64)
    query = query.astype(np.float64)
    train_sq = np.einsum("nd,nd->n", train, train)
    query_sq = np.einsum("qd,qd->q", query, query)

    # Block shape: train chunks of at least k (so that one chunk can fill the running best).
    t_block = max(k, min(n, int(math.sqrt(block_elements))))
    q_block = max(1, min(q, block_elements // t_block))
    out_idx = np.zeros((q, k), np.int64)
    out_d2 = np.zeros((q, k), np.float64)
    for q0 in range(0, q, q_block):
        qs = slice(q0, min(q, q0 + q_block))
        rows = qs.stop - qs.start
        best_d2 = np.full((rows, 0), np.inf)
        best_idx = np.zeros((rows, 0), np.int64)
        for t0 in range(0, n, t_block):
            t1 = min(n, t0 + t_block)
            d2 = query[qs] @ train[t0:t1].T  # in place from here: one block-sized array
            d2 *= -2.0
            d2 += query_sq[qs, None]
            d2 += train_sq[None, t0:t1]
            m = min(k, t1 - t0)
            idx = _smallest_by_value_then_index(d2, m)
            cand_d2 = np.concatenate([best_d2, np.take_along_axis(d2, idx, 1)], axis=1)
            cand_idx = np.concatenate([best_idx, idx + t0], axis=1)
            # Order by (distance, index): lexsort's last key is the primary one.
            order = np.lexsort((cand_idx, cand_d2), axis=1)[:, :k]
            best_d2 = np.take_along_axis(cand_d2, order, 1)
            best_idx = np.take_along_axis(cand_idx, order, 1)
        out_idx[qs], out_d2[qs] = best_idx, best_d2
    return out_idx, np.sqrt(np.maximum(out_d2, 0.0))


def _smallest_by_value_then_index(d: np.ndarray, m: int) -> np.ndarray:
    """Column indices of the m smallest entries of each row, ties broken towards lower indices."""
    if m >= d.shape[1]:
        return np.broadcast_to(np.arange(d.shape[1]), d.shape).copy()
    idx = np.argpartition(d, m - 1, axis=1)[:, :m]
    # argpartition breaks a tie at the m-th value arbitrarily: the rows with more entries at or below
    # it than m (rare: equal distances) are re-done with a stable sort.
    kth = np.take_along_axis(d, idx, 1).max(axis=1)
    tied = np.flatnonzero((d <= kth[:, None]).sum(axis=1) > m)
    for r in tied:
        idx[r] = np.argsort(d[r], kind="stable")[:m]
    return idx


def knn_vote(neighbor_labels: np.ndarray) -> np.ndarray:
    """Majority vote of each row of neighbour labels (nearest first).

    A tie between classes goes to the one whose first vote comes earliest, i.e. the tied class of
    the nearest neighbour.

    Args:
        neighbor_labels: int (Q, k), nearest first.

    Returns:
        int (Q,) predicted labels.
    """
    labels = np.asarray(neighbor_labels)
    if labels.ndim != 2 or labels.shape[1] == 0:
        raise ValueError(f"neighbor_labels must be (Q, k) with k >= 1, got {labels.shape}")
    q, k = labels.shape
    # votes[i, j] = how many of row i's neighbours share neighbour j's label.
    votes = (labels[:, :, None] == labels[:, None, :]).sum(axis=2)
    first_max = np.argmax(votes == votes.max(axis=1, keepdims=True), axis=1)
    return labels[np.arange(q), first_max]


def knn_accuracy(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    query_feats: np.ndarray,
    query_labels: np.ndarray,
    k: int,
    *,
    neighbors: np.ndarray | None = None,
) -> float:
    """Accuracy of the k-NN classifier (`knn_vote` of the k nearest training points) on queries.

    Args:
        train_feats / train_labels: (N, D) and (N,).
        query_feats / query_labels: (Q, D) and (Q,).
        k: neighbours that vote.
        neighbors: (Q, >= k) indices from `nearest_neighbors`, if already computed.

    Returns:
        The fraction of queries whose vote equals their label.
    """
    train_labels, query_labels = np.asarray(train_labels), np.asarray(query_labels)
    if len(train_labels) != len(train_feats) or len(query_labels) != len(query_feats):
        raise ValueError("one label per feature row is needed")
    if neighbors is None:
        neighbors, _ = nearest_neighbors(train_feats, query_feats, k)
    pred = knn_vote(train_labels[np.asarray(neighbors)[:, :k]])
    return float(np.mean(pred == query_labels))


def to_rgb_uint8(images: np.ndarray, mean: tuple, std: tuple) -> np.ndarray:
    """Normalised (N, H, W, C) float images back to uint8 RGB (N, H, W, 3) for display: 3
    channels as they are, any other count as the grey of their mean."""
    x = np.asarray(images, np.float32) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    x = np.clip(x, 0.0, 1.0)
    if x.shape[-1] != 3:
        x = np.repeat(x.mean(axis=-1, keepdims=True), 3, axis=-1)
    return np.round(x * 255).astype(np.uint8)


def tile_side(image_side: int) -> int:
    """Display side of an image of `image_side` pixels: upscaled by an integer to >= MIN_TILE_SIDE."""
    return image_side * max(1, math.ceil(MIN_TILE_SIDE / image_side))


def neighbor_grid(
    query_images: np.ndarray,
    neighbor_images: np.ndarray,
    query_labels: np.ndarray | None = None,
    neighbor_labels: np.ndarray | None = None,
) -> np.ndarray:
    """The picture: one row per query, the query then its neighbours, each in a thin border.

    Args:
        query_images: uint8 (Q, H, W, 3).
        neighbor_images: uint8 (Q, k, H, W, 3), nearest first.
        query_labels / neighbor_labels: (Q,) and (Q, k); with them, a neighbour's border is green
            where its label is the query's and red where not (else grey); the query's is blue.

    Returns:
        uint8 (height, width, 3), height = Q * (S + 2 * BORDER) + (Q + 1) * GAP and width =
        (k + 1) * (S + 2 * BORDER) + (k + 2) * GAP + QUERY_GAP, S = `tile_side(H)`.
    """
    from jaxcnn.visualize import GAP, tile_grid, with_border  # noqa: PLC0415

    q, k = neighbor_images.shape[:2]
    side = tile_side(query_images.shape[1])
    tiles = []
    for i in range(q):
        tiles.append(with_border(_upscale(query_images[i], side), QUERY_COLOR, BORDER))
        for j in range(k):
            color = NEUTRAL_COLOR
            if query_labels is not None and neighbor_labels is not None:
                same = neighbor_labels[i, j] == query_labels[i]
                color = SAME_LABEL_COLOR if same else OTHER_LABEL_COLOR
            tiles.append(with_border(_upscale(neighbor_images[i, j], side), color, BORDER))
    return tile_grid(tiles, ncols=k + 1, gap=GAP, extra_gap_after_col={0: QUERY_GAP})


def _upscale(image: np.ndarray, side: int) -> np.ndarray:
    f = side // image.shape[0]
    return np.repeat(np.repeat(image, f, axis=0), f, axis=1)


def gather_images(batches, indices: np.ndarray) -> dict[int, np.ndarray]:
    """The (normalised) images at `indices` of a padded batch stream, by index."""
    wanted = set(int(i) for i in np.ravel(indices))
    out, n = {}, 0
    for batch in batches:
        real = int(np.sum(batch["mask"]))
        for j in range(real):
            if n + j in wanted:
                out[n + j] = batch["image"][j]
        n += real
        if len(out) == len(wanted):
            break
    return out


# ---------------------------------------------------------------------------------------------------
# The command line (flags defined only when this module is the program).


def _define_flags() -> types.SimpleNamespace:
    from absl import flags  # noqa: PLC0415

    from jaxcnn.features import CHECKPOINTS  # noqa: PLC0415

    return types.SimpleNamespace(
        workdir=flags.DEFINE_string("workdir", None, "Run directory written by jaxcnn.train."),
        queries=flags.DEFINE_integer("queries", 10, "Test images shown (rows of the picture)."),
        k=flags.DEFINE_integer("k", 8, "Neighbours per query, and voters of the k-NN classifier."),
        seed=flags.DEFINE_integer("seed", 0, "Seed of the choice of the query images."),
        tap=flags.DEFINE_string(
            "tap", "pre_logits", "Feature space: a tap of model.features (see jaxcnn.features)."
        ),
        checkpoint=flags.DEFINE_enum(
            "checkpoint", "latest", list(CHECKPOINTS), "Which weights: latest or best."
        ),
        output=flags.DEFINE_string(
            "output", None, "The PNG to write; default WORKDIR/neighbors_<tap>.png."
        ),
        batch_size=flags.DEFINE_integer("batch_size", 256, "Images per forward pass."),
        data_dir=flags.DEFINE_string("data_dir", None, "TFDS data dir (default: the run's)."),
    )


def main(argv: list[str], f: types.SimpleNamespace) -> int:
    from jaxcnn import features as feats_lib  # noqa: PLC0415

    if len(argv) > 1:
        print(f"error: unexpected arguments: {argv[1:]}", file=sys.stderr)
        return 2
    if not f.workdir.value:
        print("error: --workdir is required (a run directory of jaxcnn.train)", file=sys.stderr)
        return 2
    for name in ("queries", "k", "batch_size"):
        if getattr(f, name).value <= 0:
            print(
                f"error: --{name} must be positive, got {getattr(f, name).value}", file=sys.stderr
            )
            return 2
    try:
        feats_lib.read_run_config(f.workdir.value)  # before JAX and TensorFlow start
    except feats_lib.RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from absl import logging  # noqa: PLC0415

    from jaxcnn import runtime  # noqa: PLC0415

    runtime.configure_xla_cpu()
    logging.set_verbosity(logging.WARNING)
    from jaxcnn.data import DatasetUnavailableError  # noqa: PLC0415

    tap, k = f.tap.value, f.k.value
    try:
        run = feats_lib.load_run(f.workdir.value, f.checkpoint.value, data_dir=f.data_dir.value)
        feats_lib.check_tap(feats_lib.available_taps(run.model, run.image_size, run.channels), tap)
        info = run.dataset
        if k > info.num_train:
            raise ValueError(f"--k={k} is more than the {info.num_train} training images")
        if f.queries.value > info.num_eval:
            raise ValueError(
                f"--queries={f.queries.value} is more than the {info.num_eval} test images"
            )
    except (ValueError, DatasetUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    bs, data_dir = f.batch_size.value, f.data_dir.value
    test_x, test_y = feats_lib.split_features(run, "test", tap, bs, data_dir=data_dir)
    train_x, train_y = feats_lib.split_features(run, "train", tap, bs, data_dir=data_dir)
    idx, _ = nearest_neighbors(train_x, test_x, k)
    acc = knn_accuracy(train_x, train_y, test_x, test_y, k, neighbors=idx)

    rng = np.random.default_rng(f.seed.value)
    queries = np.sort(rng.choice(len(test_x), size=f.queries.value, replace=False))
    q_images = gather_images(feats_lib.split_batches(run, "test", bs, data_dir), queries)
    n_images = gather_images(feats_lib.split_batches(run, "train", bs, data_dir), idx[queries])
    rgb = lambda x: to_rgb_uint8(np.stack(x), info.mean, info.std)  # noqa: E731
    picture = neighbor_grid(
        rgb([q_images[int(i)] for i in queries]),
        rgb([[n_images[int(j)] for j in idx[i]] for i in queries]),
        test_y[queries],
        train_y[idx[queries]],
    )
    output = f.output.value or str(Path(f.workdir.value) / f"neighbors_{tap}.png")
    from jaxcnn.visualize import save_png  # noqa: PLC0415

    save_png(output, picture)
    print(f"wrote {output}: {len(queries)} test images and their {k} nearest training images")
    print(
        f"k-NN accuracy (k={k}, L2 on {tap}, {train_x.shape[1]}-d) of {run.arch} at step "
        f"{run.step}: {acc:.4f} on the {len(test_x)} {info.name}/{info.eval_split} images "
        f"({len(train_x)} training images; chance {1 / info.num_classes:.4f})"
    )
    return 0


if __name__ == "__main__":
    from absl import app

    _FLAGS = _define_flags()
    app.run(lambda argv: sys.exit(main(argv, _FLAGS)))
