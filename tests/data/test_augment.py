"""jaxcnn.data.augment: timm's specs as Keras settings, per-example determinism, what the ops do,
and the training pipeline with and without a policy."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from jaxcnn import data
from jaxcnn.config import get_config
from jaxcnn.data import augment, pipeline
from jaxcnn.data.sources import DatasetInfo
from jaxcnn.data.tf import tf

RA = augment.parse_randaugment
AM = augment.parse_augmix


# --- Parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, num_ops, factor, not_applied",
    [
        ("rand-m9-n2-mstd0.5", 2, 0.9, ("mstd0.5",)),
        ("rand-m9-mstd0.5-inc1", 2, 0.9, ("mstd0.5", "inc1")),  # DeiT's
        ("rand-m7-n3-mstd101", 3, 0.7, ()),  # timm's uniform magnitude: what Keras does
        ("rand", 2, 1.0, ()),  # timm's defaults: m10, n2
        ("rand-n1-m5-inc0-p1", 1, 0.5, ()),
        ("rand-m6-p0.5", 2, 0.6, ("p0.5",)),
        ("rand-m10-mmax6", 2, 0.6, ()),
        ("rand-m2.5", 2, 0.25, ()),
        ("trivial", 1, 1.0, ()),
    ],
)
def test_randaugment_specs(spec, num_ops, factor, not_applied):
    got = RA(spec)
    assert (got.spec, got.num_ops, got.not_applied) == (spec, num_ops, not_applied)
    assert got.factor == pytest.approx(factor)
    layer = augment._randaugment_layer(got)
    assert (layer.num_ops, layer.factor) == (num_ops, pytest.approx((0, factor)))


@pytest.mark.parametrize(
    "spec, chains, depth, factor, alpha, not_applied",
    [
        ("augmix-m3-w3-d3", 3, 3, 0.3, 1.0, ()),
        ("augmix", 3, 3, 0.3, 1.0, ()),  # timm's defaults
        ("augmix-m5-w4-d2-a0.5", 4, 2, 0.5, 0.5, ()),
        ("augmix-m3-mstd0.5-b1", 3, 3, 0.3, 1.0, ("mstd0.5", "b1")),
        ("augmix-m3-mstd101-b0", 3, 3, 0.3, 1.0, ()),
    ],
)
def test_augmix_specs(spec, chains, depth, factor, alpha, not_applied):
    got = AM(spec)
    assert (got.num_chains, got.chain_depth, got.alpha, got.not_applied) == (
        chains,
        depth,
        alpha,
        not_applied,
    )
    assert got.factor == pytest.approx(factor)
    layer = augment._augmix_layer(got)
    assert (layer.num_chains, layer.chain_depth, layer.alpha) == (chains, depth, alpha)
    assert layer.factor == pytest.approx((0, factor))


@pytest.mark.parametrize(
    "flag, value, says",
    [
        ("randaugment", "original", "AutoAugment policies are not supported"),
        ("randaugment", "v0r-mstd0.5", "AutoAugment policies are not supported"),
        ("randaugment", "imagenet", "AutoAugment policies are not supported"),
        ("randaugment", "rand-m11", "m11: m must be a number >= 0 and <= 10"),
        ("randaugment", "rand-n0", "n0: n must be an integer >= 1"),
        ("randaugment", "rand-n2.5", "n must be an integer"),
        ("randaugment", "rand-m9-m8", "'m' is given twice"),
        ("randaugment", "rand-m9-tweights", "unknown section 'tweights'"),
        ("randaugment", "rand-m9-x", "unknown section 'x'"),
        ("randaugment", "rand-inc2", "inc must be an integer >= 0 and <= 1"),
        ("randaugment", "augmix-m3", "set --config.augmix instead"),
        ("randaugment", "ta_wide", "unknown policy 'ta_wide'"),
        ("augmix", "augmix-w0", "w0: w must be an integer >= 1"),
        ("augmix", "augmix-d0", "d0: d must be an integer >= 1"),
        ("augmix", "augmix-a0", "a0: a must be a number > 0"),
        ("augmix", "augmix-m3-n2", "unknown section 'n2'"),
        ("augmix", "rand-m9", "not an AugMix spec"),
        ("random_erasing", 1.5, "must be a probability in [0, 1]"),
        ("random_erasing", -0.1, "must be a probability in [0, 1]"),
        ("random_erasing", True, "must be a probability in [0, 1]"),
        ("random_erasing", "0.25", "must be a probability in [0, 1]"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_flag(flag, value, says):
    with pytest.raises(ValueError) as err:
        augment.Policy.from_config({flag: value})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"--config.{flag}={value!r}: ")
    assert says in message
    if flag != "random_erasing":
        assert "; valid: " in message and "e.g. '" in message


def test_policy_from_config():
    """The default config has no policy; the policy of a config and its one-line description;
    RandAugment and AugMix together are refused."""
    cfg = get_config()
    assert augment.Policy.from_config(cfg) is None
    cfg.randaugment, cfg.random_erasing = "rand-m9-n2-mstd0.5", 0.25
    policy = augment.Policy.from_config(cfg)
    assert policy == augment.Policy(RA("rand-m9-n2-mstd0.5"), None, 0.25)
    assert policy.describe() == (
        "RandAugment(num_ops=2, factor=0.9) [timm's mstd0.5 not applied] + random erasing p=0.25 "
        "(zero fill after normalisation)"
    )
    assert augment.Policy.from_config({"augmix": "augmix-m3-w3-d3"}).describe() == (
        "AugMix(num_chains=3, chain_depth=3, factor=0.3, alpha=1; no JSD loss)"
    )
    assert augment.Policy.from_config({"random_erasing": 1}) == augment.Policy(random_erasing=1.0)
    cfg.augmix = "augmix-m3"
    with pytest.raises(ValueError, match=r"^--config.randaugment=.* are both set: choose one"):
        augment.Policy.from_config(cfg)


def test_documented_op_sets_are_kerass():
    """The module docstring lists Keras's ops: they are the ones the layers apply."""
    ra = augment._randaugment_layer(RA("rand-m9"))
    am = augment._augmix_layer(AM("augmix-m3"))
    assert sorted(ra._AUGMENT_LAYERS) == sorted(am._augment_layers)
    assert len(ra._AUGMENT_LAYERS) == 11
    for name in ra._AUGMENT_LAYERS:
        assert name in augment.__doc__
    assert isinstance(ra.equalization, augment._Equalization)
    assert isinstance(am.equalization, augment._Equalization)


# --- Determinism ---------------------------------------------------------------------------------

_RNG = np.random.default_rng(0)
# Smooth images with noise, uint8: 24 grayscale 28 x 28 and 24 RGB 32 x 32.
_GRAY = np.clip(
    np.linspace(0, 255, 28)[None, :, None, None] * np.linspace(0.2, 1, 28)[None, None, :, None]
    + _RNG.normal(0, 30, (24, 28, 28, 1)),
    0,
    255,
).astype(np.uint8)
_RGB = _RNG.integers(0, 256, (24, 1, 1, 3)) * np.linspace(0, 1, 32)[None, :, None, None]
_RGB = np.clip(_RGB + _RNG.normal(0, 20, (24, 32, 32, 3)), 0, 255).astype(np.uint8)

# Each policy's tf.functions are traced once per image shape, so the tests share these objects.
POLICIES = {
    "randaugment": augment.Policy(randaugment=RA("rand-m9-n2-mstd0.5")),
    "augmix": augment.Policy(augmix=AM("augmix-m3-w2-d2")),
    "erasing": augment.Policy(random_erasing=0.5),
}


@functools.cache
def _per_example(policy):
    """The policy on one image (before and after normalisation, no normalisation between), from
    the stateless seed `s`; a tf.function, so tf.data maps trace it once per image shape."""

    @tf.function
    def one(image, s):
        before, after = tf.unstack(tf.random.experimental.stateless_split(s, 2))
        out = augment.apply_before_normalize(image, before, policy)
        return augment.apply_after_normalize(tf.cast(out, tf.float32), after, policy)

    return one


def _augmented(images, policy, seed, order=None, parallel=1):
    """The policy on every image, example i from stateless seed (seed, i), visited in `order`
    with `parallel` map calls (not deterministic when > 1); in index order."""
    images = tf.constant(images)
    order = np.arange(len(images)) if order is None else np.asarray(order)
    one = _per_example(policy)

    def indexed(i):
        return i, one(tf.gather(images, i), tf.stack([tf.constant(seed, tf.int64), i]))

    ds = tf.data.Dataset.from_tensor_slices(order.astype(np.int64))
    ds = ds.map(indexed, num_parallel_calls=parallel, deterministic=parallel == 1)
    got = dict(ds.as_numpy_iterator())
    return np.stack([got[i] for i in range(len(images))])


@pytest.mark.parametrize("name", POLICIES)
def test_pixels_depend_on_the_seed_only(name):
    """The same (seed, index) gives the same bits in any order, with parallel map calls in no
    fixed order; another seed gives other pixels."""
    policy = POLICIES[name]
    want = _augmented(_GRAY, policy, seed=7)
    reverse = np.arange(len(_GRAY))[::-1]
    np.testing.assert_array_equal(
        _augmented(_GRAY, policy, seed=7, order=reverse, parallel=4), want
    )
    other = _augmented(_GRAY, policy, seed=8)
    differ = [not np.array_equal(a, b) for a, b in zip(want, other, strict=True)]
    assert np.mean(differ) > (0.4 if name == "erasing" else 0.9)


@pytest.mark.parametrize("name", POLICIES)
def test_policy_graph_has_no_state(name):
    """No variable and no stateful random op anywhere in the policy's graph (switch_case branches
    included): nothing a layer's SeedGenerator would advance."""
    fn = _per_example(POLICIES[name])
    graph = fn.get_concrete_function(
        tf.TensorSpec(_GRAY.shape[1:], tf.uint8), tf.TensorSpec((2,), tf.int64)
    ).graph
    assert not graph.variables and not graph.external_captures
    graph_def = graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops |= {node.op for node in function.node_def}
    assert "StatelessRandomUniformV2" in ops  # the ops are there
    assert ("StatelessCase" in ops) == (name != "erasing")
    assert not {op for op in ops if "Variable" in op}
    random_ops = {op for op in ops if "Random" in op or op in ("Multinomial", "TruncatedNormal")}
    assert all(op.startswith("Stateless") for op in random_ops), random_ops


def _reference_pixels() -> dict[str, np.ndarray]:
    # AugMix's ops are RandAugment's; what it adds (sampling and mixing) is plain TensorFlow.
    return {name: _augmented(_GRAY, POLICIES[name], seed=3) for name in ("randaugment", "erasing")}


def test_pixels_do_not_depend_on_the_keras_backend(tmp_path):
    """A process on the other Keras backend (jax / tensorflow) gives the same bits: the layers
    run on Keras's TensorFlow backend inside tf.data either way."""
    other = "tensorflow" if keras.backend.backend() == "jax" else "jax"
    out = tmp_path / "pixels.npz"
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import test_augment as t; "
        "import keras; assert keras.backend.backend() == sys.argv[3]; "
        "np.savez(sys.argv[2], **t._reference_pixels())"
    )
    env = {**os.environ, "KERAS_BACKEND": other, "JAX_PLATFORMS": "cpu"}
    here = str(Path(__file__).parent)
    subprocess.run(
        [sys.executable, "-c", code, here, str(out), other], env=env, check=True, timeout=300
    )
    theirs = np.load(out)
    for name, pixels in _reference_pixels().items():
        np.testing.assert_array_equal(theirs[name], pixels, err_msg=name)


# --- What the ops do -----------------------------------------------------------------------------


def test_randaugment_is_kerass_compositor():
    """Per-example op choice + switch_case gives exactly what Keras's RandAugment.transform_images
    gives for the same transformation."""
    layer = augment._randaugment_layer(RA("rand-m9-n3"))
    images = tf.constant(_RGB[:1], tf.float32)
    for k in range(6):
        seed = tf.constant([k, 11], tf.int64)
        index, op_seed = augment._randaugment_plan(layer, seed)
        transforms = {
            name: getattr(layer, name).get_random_transformation(
                images, training=True, seed=augment._Draws(op_seed(j))
            )
            for j, name in enumerate(layer._AUGMENT_LAYERS)
        }
        want = layer.transform_images(images, {"transforms": transforms, "layer_idxes": index})
        np.testing.assert_array_equal(augment._randaugment(images, seed, layer), want)


def test_augmix_is_kerass_mix():
    """Per-example chains give exactly what Keras's AugMix.transform_images gives for the same
    chains, chain weights and weight of the original."""
    layer = augment._augmix_layer(AM("augmix-m3-w3-d3"))
    names = layer._augment_layers
    images = tf.constant(_RGB[1:2], tf.float32)
    skipped = 0
    for k in range(4):
        seed = tf.constant([k, 5], tf.int64)
        chain_weights, weight, ops, slot_seed = augment._augmix_plan(layer, seed)
        ops = ops.numpy()
        skipped += (ops == len(names)).sum()
        chains = [
            [
                {
                    "layer_name": names[ops[c, d]],
                    "transformation": getattr(layer, names[ops[c, d]]).get_random_transformation(
                        images, training=True, seed=augment._Draws(slot_seed(c, d))
                    ),
                }
                for d in range(layer.chain_depth)
                if ops[c, d] < len(names)
            ]
            for c in range(layer.num_chains)
        ]
        transformation = {
            "chain_mixing_weights": chain_weights,
            "weight_sample": weight,
            "chain_transforms": chains,
        }
        want = layer.transform_images(images, transformation)
        np.testing.assert_array_equal(augment._augmix(images, seed, layer), want)
        assert float(tf.reduce_sum(chain_weights)) == pytest.approx(1.0, abs=1e-6)
    assert skipped  # Keras's "no op" choice came up


def test_equalization_is_kerass():
    """The bincount Equalization gives Keras's Equalization's numbers on this backend."""
    ours = augment._Equalization(value_range=(0, 255))
    stock = keras.layers.Equalization(value_range=(0, 255))
    for layer in (ours, stock):
        layer.backend.set_backend("tensorflow")
    for image in [*_RGB[:4], *_GRAY[:4]]:
        image = tf.constant(image[None], tf.float32)
        want = stock.transform_images(image, None)
        assert not np.array_equal(want, image)
        np.testing.assert_array_equal(ours.transform_images(image, None), want)


@pytest.mark.parametrize(
    "name, images",
    [
        ("randaugment", _GRAY),
        ("randaugment", _RGB[:16]),
        ("augmix", _GRAY),
        ("augmix", _RGB[:16]),
        ("trivial", _GRAY),
    ],
    ids=["randaugment-gray", "randaugment-rgb", "augmix-gray", "augmix-rgb", "trivial-gray"],
)
def test_policy_changes_images_within_range(name, images):
    """The policy changes (nearly) every image, keeps its shape, and returns float32 on 0..255."""
    policy = augment.Policy(randaugment=RA("trivial")) if name == "trivial" else POLICIES[name]
    out = _augmented(images, policy, seed=1)
    assert out.dtype == np.float32 and out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 255
    change = np.abs(out - images).mean(axis=(1, 2, 3))
    # trivial: one op per image, and colour degeneration (1 in 11) is the identity on grey.
    assert np.mean(change > 1.0) > (0.75 if name == "trivial" else 0.85), change


def test_grayscale_is_rgb_with_equal_channels():
    """A 1-channel image gets what each channel of the same image as RGB gets: the RGB copy's
    channels stay equal bit for bit, and match the 1-channel result to float rounding (contrast's
    mean over 3 channels) or, after colour degeneration (the identity on grey; on the RGB copy its
    weights sum to 0.9999), to 0.05 of 255."""
    policy = POLICIES["randaugment"]
    gray = _augmented(_GRAY, policy, seed=2)
    rgb = _augmented(_GRAY.repeat(3, axis=-1), policy, seed=2)
    assert gray.shape == _GRAY.shape and rgb.shape == (*_GRAY.shape[:3], 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], rgb[..., 0])
    np.testing.assert_allclose(rgb[..., :1], gray, rtol=0, atol=0.05)
    assert not np.array_equal(gray, _GRAY)


# --- Random erasing ------------------------------------------------------------------------------


def _erased(p, n, size=32):
    """Images of values in [1, 2) (normalised-like, never 0) after random erasing with
    probability p, example i with seed (4, i)."""
    images = 1 + np.random.default_rng(n).random((n, size, size, 3)).astype(np.float32)
    return images, _augmented(images, augment.Policy(random_erasing=p), seed=4)


def test_random_erasing_zeroes_one_box():
    """p = 1: every image gets one box of zeros (all channels), the rest untouched; its area is
    2%..33% of the image (one pixel of rounding per side), its sides sqrt(0.02..0.33)."""
    images, out = _erased(1.0, 120)
    areas = []
    for image, got in zip(images, out, strict=True):
        zero = got == 0
        assert (zero == zero[..., :1]).all()
        rows, cols = np.flatnonzero(zero[..., 0].any(1)), np.flatnonzero(zero[..., 0].any(0))
        box = np.zeros_like(zero[..., 0])
        box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
        np.testing.assert_array_equal(zero[..., 0], box)  # a filled rectangle
        np.testing.assert_array_equal(got[~zero], image[~zero])
        h, w = len(rows), len(cols)
        for side in (h, w):
            assert np.sqrt(0.02) * 32 - 1 <= side <= np.sqrt(0.33) * 32 + 1
        areas.append(h * w / 32**2)
    slack = 2 * np.sqrt(0.33) / 32 + 1 / 32**2
    assert 0.02 - slack <= min(areas) and max(areas) <= 0.33 + slack
    assert min(areas) < 0.06 and max(areas) > 0.2  # the range is used, not one size


def test_random_erasing_probability():
    """p = 0 is the identity (the Keras layer too, not only the policy's short cut); p = 0.5
    erases about half of the images (Keras's factor=(p, p); a bare factor=p would erase p / 2)."""
    images, out = _erased(0.0, 8)
    np.testing.assert_array_equal(out, images)
    never = augment._erasing_layer(0.0)
    for i, image in enumerate(images):
        got = augment._transform(never, image[None], tf.constant([0, i], tf.int64))
        np.testing.assert_array_equal(got[0], image)
    images, out = _erased(0.5, 400, size=8)
    erased = (out == 0).any(axis=(1, 2, 3))
    assert 0.42 < erased.mean() < 0.58
    np.testing.assert_array_equal(out[~erased], images[~erased])


# --- The training pipeline -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return data.dataset_info("digits")


def _first(batches, n):
    return [next(batches) for _ in range(n)]


def test_pipeline_policy_resumes_exactly(digits):
    """With a policy, starting at step k gives the batches of the uninterrupted stream; the policy
    changes pixels, not the order."""
    policy = augment.Policy(RA("rand-m9-n2-mstd0.5"), None, 0.25)
    train = functools.partial(data.train_batches, digits, global_batch=64, image_size=8, seed=3)
    stream = _first(train(policy=policy), 5)
    resumed = _first(train(policy=policy, start_step=3), 2)
    for want, got in zip(stream[3:], resumed, strict=True):
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])
    plain = _first(train(), 2)
    for with_policy, without in zip(stream, plain, strict=False):
        np.testing.assert_array_equal(with_policy["label"], without["label"])
        assert not np.array_equal(with_policy["image"], without["image"])
        assert with_policy["image"].dtype == np.float32


def test_pipeline_parallelism_does_not_change_pixels(digits, monkeypatch):
    """train_batches on one tf.data thread gives the bits it gives on two."""
    policy = augment.Policy(augmix=AM("augmix-m3-w2-d1"), random_erasing=0.5)
    train = functools.partial(
        data.train_batches, digits, global_batch=32, image_size=8, seed=1, policy=policy
    )
    want = _first(train(start_step=40), 2)
    monkeypatch.setattr(pipeline, "_TF_THREADS", 1)
    got = _first(train(start_step=40), 2)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_pipeline_policy_without_crop_and_flip(digits):
    """augment=False with a policy: the policy on the eval transform's image (no crop or flip)."""
    policy = augment.Policy(random_erasing=1.0)
    train = functools.partial(data.train_batches, digits, global_batch=64, image_size=8, seed=2)
    plain = next(train(augment=False))
    erased = next(train(augment=False, policy=policy))
    np.testing.assert_array_equal(erased["label"], plain["label"])
    kept = erased["image"] != 0
    assert 0.3 < kept.mean() < 0.98 and (~kept).any(axis=(1, 2, 3)).all()
    np.testing.assert_array_equal(erased["image"][kept], plain["image"][kept])


def _old_train_preprocess(image, seed, info, image_size):
    """pipeline._train_preprocess before policies existed, verbatim."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    channels = info.image_shape[-1]
    if pipeline._is_small(info):
        if info.fixed_size != image_size:
            image = tf.image.resize(image, (image_size, image_size), antialias=True)
        pad = max(1, image_size // 8)
        image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, (image_size, image_size, channels), seeds[0])
    else:
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
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    return pipeline._normalize(image, info)


@pytest.mark.parametrize("image_size", [8, 12])
def test_no_policy_is_bit_identical_to_before(digits, monkeypatch, image_size):
    """Without a policy, train_batches gives the pixels of the pipeline before policies (its
    preprocessing swapped back in), crop + flip on and off; so does the large-image path."""
    train = functools.partial(
        data.train_batches, digits, global_batch=64, image_size=image_size, seed=9, start_step=21
    )
    new = {aug: _first(train(augment=aug), 2) for aug in (True, False)}
    monkeypatch.setattr(
        pipeline,
        "_train_preprocess",
        lambda image, seed, info, size, *args, **kwargs: _old_train_preprocess(
            image, seed, info, size
        ),
    )
    for aug in (True, False):
        for a, b in zip(new[aug], _first(train(augment=aug), 2), strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["label"], b["label"])
    monkeypatch.undo()

    large = DatasetInfo("large", 2, (None, None, 3), "train", "test", 8, 8, (0.5,) * 3, (0.25,) * 3)
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (8, 40, 56, 3)), tf.uint8)

    def both(i):
        s = tf.stack([tf.constant(9, tf.int64), i])
        image = images[i]
        return (
            pipeline._train_preprocess(image, s, large, 24),
            _old_train_preprocess(image, s, large, 24),
        )

    for new_image, old_image in tf.data.Dataset.range(8).map(both).as_numpy_iterator():
        assert new_image.shape == (24, 24, 3)
        np.testing.assert_array_equal(new_image, old_image)
