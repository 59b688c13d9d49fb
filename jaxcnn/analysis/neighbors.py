"""Nearest neighbours in feature space, the k-NN classifier on them, and their picture.

The lecture's picture of AlexNet's fc7 space: test images (one per row, left) and the training images
closest to them by L2 distance between their `pre_logits` features (left to right, nearest first).
Images that look alike in pixel space need not be neighbours here, and neighbours need not look alike
pixel by pixel: the features encode what the classifier needs. Each tile has a thin border: blue for
the query, green for a neighbour with the query's label, red for one with another label.

`nearest_neighbors(train_feats, query_feats, k)` (exact: every pair's distance, in chunks so that
memory stays bounded), `knn_vote(neighbor_labels)` (majority vote, ties to the class of the nearest
among the tied), `knn_accuracy(...)`, `neighbor_grid(...)`. The command is
`python -m jaxcnn.neighbors`.
"""

import math

import numpy as np

from jaxcnn.analysis.pictures import GAP, tile_grid, with_border

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
