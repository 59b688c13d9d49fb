"""tf.data pipelines: seeded shuffling, augmentation, eval padding; numpy batches out.

Training is a deterministic function of (seed, step) alone, whatever the number of hosts: each
epoch shuffles the whole training split with its own seed into one global order, global batch `s`
holds positions `[s * B, (s + 1) * B)` of it, and every example's augmentation draws from a
stateless seed made of (seed, epoch, position). Each process keeps only its own rows of every global
batch (rows `[p * B / P, (p + 1) * B / P)` of batch `s` for process `p` of `P`), so one process,
two processes or a pod of any size train on the same batches, and a run resumed on a slice of
another size continues the same stream. The price: every process reads the whole split (and
decodes only its own rows), where reading disjoint shards would read 1/P of it; for the datasets
jaxcnn trains on this is small next to the step time, and it is what makes resuming on another
topology exact.

Augmentation: with `augment`, a random crop (pad-and-crop for small images, Inception's
random-resized crop for others) and a horizontal flip; with a `jaxcnn.data.augment.Policy`,
RandAugment or AugMix on top of that on the 0..255 image and random erasing after normalisation.
The policy applies whenever it is set; crop + flip only with `augment` (without it the policy acts
on the eval transform's image). The policy's draws come from a fold of the example's seed, so runs
without one are bit-identical to the pipeline before policies existed.
"""

import math
from collections.abc import Iterator

import numpy as np

from jaxcnn.data.augment import Policy, apply_after_normalize, apply_before_normalize
from jaxcnn.data.sources import DatasetInfo, decode_example, load_split
from jaxcnn.data.tf import tf

# Images at most this side are "small" (MNIST, CIFAR): pad-and-crop augmentation. Larger or
# variable-size ones get ImageNet's random-resized-crop.
SMALL_IMAGE_MAX = 64
# Examples a shuffle buffer holds: the whole split for the small datasets (a full permutation each
# epoch), a window of the stream for ImageNet-size ones.
SHUFFLE_BUFFER = 100_000
# Keep tf.data from taking the CPU from JAX's own threads (measured: a busy pipeline cuts matmul
# throughput by ~20% on 2 cores).
_TF_THREADS = 2


def _options() -> "tf.data.Options":
    opts = tf.data.Options()
    opts.deterministic = True
    opts.threading.private_threadpool_size = _TF_THREADS
    opts.threading.max_intra_op_parallelism = 1
    return opts


def _normalize(image: "tf.Tensor", info: DatasetInfo) -> "tf.Tensor":
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(info.mean)) / tf.constant(info.std)


def _is_small(info: DatasetInfo) -> bool:
    return info.fixed_size is not None and info.fixed_size <= SMALL_IMAGE_MAX


def _crop_flip(image, seed, info: DatasetInfo, image_size: int):
    """The random crop and horizontal flip of one uint8 image; `seed` is a stateless (2,) int seed."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    channels = info.image_shape[-1]
    if _is_small(info):
        if info.fixed_size != image_size:
            image = tf.image.resize(image, (image_size, image_size), antialias=True)
        pad = max(1, image_size // 8)  # 4 pixels at 32x32, as in the ResNet paper's CIFAR recipe
        image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, (image_size, image_size, channels), seeds[0])
    else:
        # Inception-style random-resized crop: 8%-100% of the area, aspect ratio 3/4-4/3.
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            tf.zeros((0, 0, 4)),
            seed=seeds[0],
            min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        image = tf.slice(image, begin, size)
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.image.stateless_random_flip_left_right(image, seeds[1])


# The policy's seed: this fold of the example's seed (the crop and flip keep theirs).
_POLICY_FOLD = 0x706F6C  # "pol"


def _train_preprocess(
    image, seed, info: DatasetInfo, image_size: int, policy: Policy | None = None, *, crop_flip=True
):
    """Random augmentation of one uint8 image; `seed` is a stateless (2,) int seed.

    `crop_flip`: the random crop and flip (else the eval transform's resize); `policy`: RandAugment
    / AugMix before normalisation, random erasing after (see the module docstring).
    """
    image = (
        _crop_flip(image, seed, info, image_size)
        if crop_flip
        else eval_resize(image, info, image_size)
    )
    if policy is None:
        return _normalize(image, info)
    before, after = tf.unstack(
        tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(seed, _POLICY_FOLD), 2
        )
    )
    image = apply_before_normalize(image, before, policy)
    return apply_after_normalize(_normalize(image, info), after, policy)


def eval_resize(image, info: DatasetInfo, image_size: int) -> "tf.Tensor":
    """The eval transform before normalisation: float32 (S, S, C) on the 0..255 scale.

    Small fixed-size datasets: the image resized to S x S (when its size differs); others: the
    shorter side resized to S / 0.875, then the central S x S crop.
    """
    if _is_small(info):
        if info.fixed_size != image_size:
            return tf.image.resize(image, (image_size, image_size), antialias=True)
        return tf.cast(image, tf.float32)
    return resize_and_crop(image, image_size / 0.875, image_size)


def resize_and_crop(
    image, resize_size: float, crop: int, method: str = "bilinear", *, torchvision: bool = False
):
    """The shorter side resized to `resize_size` (antialiased), then the central `crop` x `crop`:
    float32 (crop, crop, C) on the image's own scale.

    `torchvision=True` sizes as torchvision's `Resize(int)` + `CenterCrop` do (the longer side
    truncated, the crop offset rounded), which published weights were evaluated with; the trainer
    rounds both (its own eval transform since jaxcnn 0.1)."""
    if torchvision:
        # torchvision: long = int(size * long / short) in double precision (the short side is
        # then exactly `size`); float32 would be a pixel off for some sizes.
        hw = tf.cast(tf.shape(image)[:2], tf.float64)
        new = tf.cast(
            tf.floor(tf.constant(resize_size, tf.float64) * hw / tf.reduce_min(hw)), tf.int32
        )
    else:
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        new = tf.cast(tf.round(shape * (resize_size / tf.reduce_min(shape))), tf.int32)
    image = tf.image.resize(image, new, method=method, antialias=True)
    if torchvision:
        top = tf.cast(tf.round(tf.cast(new[0] - crop, tf.float32) / 2), tf.int32)
        left = tf.cast(tf.round(tf.cast(new[1] - crop, tf.float32) / 2), tf.int32)
    else:
        top = (new[0] - crop) // 2
        left = (new[1] - crop) // 2
    return image[top : top + crop, left : left + crop]


def _eval_preprocess(image, info: DatasetInfo, image_size: int):
    return _normalize(eval_resize(image, info, image_size), info)


def steps_per_epoch(info: DatasetInfo, global_batch: int) -> int:
    """Full global batches in one pass over the training split (the last partial one is dropped)."""
    steps = info.num_train // global_batch
    if steps == 0:
        # Evaluation pads its last batch; a training step takes one whole global batch.
        raise ValueError(
            f"--batch_size={global_batch} is larger than the {info.name} train split "
            f"({info.num_train} examples), and a training step takes one whole batch; pass "
            f"--batch_size={info.num_train} or less"
        )
    return steps


def train_batches(
    info: DatasetInfo,
    *,
    global_batch: int,
    image_size: int,
    seed: int,
    start_step: int = 0,
    data_dir: str | None = None,
    process_index: int = 0,
    process_count: int = 1,
    augment: bool = True,
    policy: Policy | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless training batches of this process's share, starting at global step `start_step`.

    The global batch of every step depends on (`seed`, step) only; this process gets its rows
    of it (see the module docstring). `augment`: random crop + flip; `policy`
    (`jaxcnn.data.augment.Policy.from_config`): RandAugment / AugMix / random erasing, applied
    whether or not `augment` is.

    Yields:
        `{"image": float32 (B, S, S, C), "label": int32 (B,)}` with B = global_batch / process_count.
    """
    if global_batch % process_count:
        raise ValueError(f"batch size {global_batch} does not split over {process_count} processes")
    local_batch = global_batch // process_count
    per_epoch = steps_per_epoch(info, global_batch)
    base = load_split(info, info.train_split, data_dir=data_dir, decode=False)
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        # Each epoch: its own shuffle seed and augmentation seeds, so (epoch, step) fixes the batch.
        ds = base.shuffle(
            min(info.num_train, SHUFFLE_BUFFER),
            seed=seed * 100_003 + epoch,
            reshuffle_each_iteration=False,
        )
        # Positions in the epoch's global order; keep this process's rows of every global batch.
        ds = ds.enumerate().skip(skip * global_batch).take((per_epoch - skip) * global_batch)
        ds = ds.filter(lambda i, _: (i % global_batch) // local_batch == process_index)

        def prep(index, ex, epoch=epoch):
            s = tf.stack([tf.constant(seed, tf.int64) * 1_000_003 + epoch, index])
            image = decode_example(ex, info)
            image = (
                _train_preprocess(image, s, info, image_size, policy, crop_flip=augment)
                if augment or policy is not None
                else _eval_preprocess(image, info, image_size)
            )
            return {"image": image, "label": tf.cast(ex["label"], tf.int32)}

        ds = ds.map(prep, num_parallel_calls=_TF_THREADS).batch(local_batch, drop_remainder=True)
        ds = ds.prefetch(2).with_options(_options())
        yield from ds.as_numpy_iterator()
        epoch, skip = epoch + 1, 0


def eval_batches(
    info: DatasetInfo,
    *,
    global_batch: int,
    image_size: int,
    data_dir: str | None = None,
    process_index: int = 0,
    process_count: int = 1,
    split: str | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Every example of the eval split exactly once, in fixed-size batches padded with mask 0.

    Every process yields the same number of batches (all-padding ones where its share runs out), so
    the global batches line up across hosts.

    Yields:
        `{"image": float32 (B, S, S, C), "label": int32 (B,), "mask": float32 (B,)}`,
        B = global_batch / process_count; mask 1 for real examples, 0 for padding.
    """
    split = split or info.eval_split
    local_batch = global_batch // process_count
    total = info.num_eval if split == info.eval_split else info.num_train
    num_batches = math.ceil(math.ceil(total / process_count) / local_batch)
    ds = load_split(
        info,
        split,
        data_dir=data_dir,
        process_index=process_index,
        process_count=process_count,
    )
    ds = ds.map(
        lambda ex: {
            "image": _eval_preprocess(ex["image"], info, image_size),
            "label": tf.cast(ex["label"], tf.int32),
        },
        num_parallel_calls=_TF_THREADS,
    )
    ds = ds.batch(local_batch).prefetch(2).with_options(_options())
    channels = info.image_shape[-1]
    it = ds.as_numpy_iterator()
    for _ in range(num_batches):
        batch = next(it, None)
        n = 0 if batch is None else len(batch["label"])
        out = {
            "image": np.zeros((local_batch, image_size, image_size, channels), np.float32),
            "label": np.zeros((local_batch,), np.int32),
            "mask": np.zeros((local_batch,), np.float32),
        }
        if n:
            out["image"][:n] = batch["image"]
            out["label"][:n] = batch["label"]
            out["mask"][:n] = 1.0
        yield out
