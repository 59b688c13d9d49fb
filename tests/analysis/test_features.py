"""Feature space: features of a split, nearest neighbours and k-NN accuracy, first-layer filters.

`run_dir` (tests/conftest.py) is one real ResNet-8 run on digits (one epoch, 44 steps), trained
once per test process and shared with the command-line tests (tests/cli).
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import create_model, features, neighbors, visualize

# --- nearest neighbours and k-NN (pure numpy) ------------------------------------------------------


def brute_force(train, query, k):
    d = np.linalg.norm(
        query[:, None, :].astype(np.float64) - train[None].astype(np.float64), axis=2
    )
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, 1)


def test_nearest_neighbors_matches_brute_force():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(203, 7)).astype(np.float32)
    query = rng.normal(size=(31, 7)).astype(np.float32)
    want_idx, want_d = brute_force(train, query, 5)
    # Tiny blocks: 8 training points x 8 queries per block, so the chunked merge is exercised.
    for block in (64, 1 << 22):
        idx, d = neighbors.nearest_neighbors(train, query, 5, block_elements=block)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_allclose(d, want_d, rtol=1e-9, atol=1e-9)
    # k = N: every point, in order.
    idx, _ = neighbors.nearest_neighbors(train[:6], query, 6, block_elements=16)
    np.testing.assert_array_equal(idx, brute_force(train[:6], query, 6)[0])


def test_nearest_neighbors_breaks_ties_by_index():
    # Four copies of the same point at indices 3, 9, 10, 17 across different blocks.
    train = np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32) + 10
    train[[3, 9, 10, 17]] = 0.0
    query = np.zeros((2, 3), np.float32)
    for block in (16, 1 << 22):
        idx, d = neighbors.nearest_neighbors(train, query, 3, block_elements=block)
        np.testing.assert_array_equal(idx, [[3, 9, 10], [3, 9, 10]])
        np.testing.assert_array_equal(d, 0.0)


def test_nearest_neighbors_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same D"):
        neighbors.nearest_neighbors(np.zeros((5, 3)), np.zeros((2, 4)), 1)
    with pytest.raises(ValueError, match="k must be between 1 and the 5"):
        neighbors.nearest_neighbors(np.zeros((5, 3)), np.zeros((2, 3)), 6)


def test_knn_vote_and_accuracy_on_a_hand_made_example():
    # Majority wins; a tie goes to the tied class of the nearest neighbour.
    votes = neighbors.knn_vote(np.array([[1, 2, 2, 1, 2], [4, 3, 3, 4, 0], [7, 7, 7, 7, 7]]))
    np.testing.assert_array_equal(votes, [2, 4, 7])

    # 1-D features: training points at 0, 1, 2 (class 0) and 10, 11 (class 1).
    train = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    train_y = np.array([0, 0, 0, 1, 1])
    query = np.array([[0.5], [10.4], [6.4], [5.0]])
    # k=3: 0.5 -> {0,1,2}: 0; 10.4 -> {10, 11, 2}: 1; 6.4 -> {10 (3.6), 2 (4.4), 11}: 1;
    # 5.0 -> {2 (3), 1 (4), 10 (5)}: 0.
    assert neighbors.knn_accuracy(train, train_y, query, np.array([0, 1, 1, 0]), 3) == 1.0
    assert neighbors.knn_accuracy(train, train_y, query, np.array([0, 1, 0, 1]), 3) == 0.5
    # k=2 at 6.4: {10 (class 1), 2 (class 0)} tie -> the nearest's class, 1.
    assert neighbors.knn_accuracy(train, train_y, query[2:3], np.array([1]), 2) == 1.0


# --- the first convolution ---------------------------------------------------------------------------


def zeros_like_shapes(model, size, channels):
    x = jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.mark.parametrize(
    "arch, size, channels, path, shape",
    [
        # torchvision alexnet: 64 x 3 x 11 x 11, the lecture's picture.
        ("alexnet", 224, 3, "params/conv1/kernel", (64, 3, 11, 11)),
        # The params tree sorts `stage1_block1` before `stem`: only the trace knows the order.
        ("resnet20", 32, 1, "params/stem/conv/kernel", (16, 1, 3, 3)),
        # ... and GoogLeNet's auxiliary head `aux1` before `conv1`.
        ("googlenet", 64, 3, "params/conv1/conv/kernel", (64, 3, 7, 7)),
    ],
)
def test_first_conv_is_the_first_applied(arch, size, channels, path, shape):
    model = create_model(arch)
    variables = zeros_like_shapes(model, size, channels)
    got_path, kernel = visualize.first_conv_kernel(model, variables, size, channels)
    assert (got_path, kernel.shape) == (path, shape)
    picture = visualize.filter_grid(kernel)
    cols = visualize.grid_columns(shape[0])
    rows = -(-shape[0] // cols)
    side = shape[2] * visualize.filter_scale(shape[2])  # 11 * 5 = 55 for AlexNet
    gap = visualize.GAP
    assert picture.shape == (rows * side + (rows + 1) * gap, cols * side + (cols + 1) * gap, 3)
    if arch == "alexnet":
        assert (rows, cols, picture.shape) == (8, 8, (458, 458, 3))


def test_alexnet_filters_in_torchvision_layout():
    """The kernel found is torchvision's `features.0.weight` (64, 3, 11, 11) itself, as the
    converter writes it (no torch import: TensorFlow, imported by the trainer, then torch crashes
    this process), and each tile is that filter, min-max normalised, as RGB."""
    from jaxcnn.weights import convert

    model = create_model("alexnet")
    rng = np.random.default_rng(0)
    variables = jax.tree.map(
        lambda z: rng.normal(size=z.shape).astype(np.float32), zeros_like_shapes(model, 224, 3)
    )
    want = convert.to_torch("alexnet", variables)["features.0.weight"]
    _, kernel = visualize.first_conv_kernel(model, variables, 224, 3)
    assert kernel.shape == want.shape == (64, 3, 11, 11)
    np.testing.assert_array_equal(kernel, want)
    tiles = visualize.filter_images(kernel, scale=1)
    f = want[5].transpose(1, 2, 0)
    np.testing.assert_array_equal(
        tiles[5], np.round((f - f.min()) / (f.max() - f.min()) * 255).astype(np.uint8)
    )


def test_filter_images_grey_and_channel_mean():
    k = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3)
    tiles = visualize.filter_images(k, scale=2)
    assert tiles.shape == (2, 6, 6, 3)
    assert (tiles[..., 0] == tiles[..., 1]).all() and (tiles[..., 1] == tiles[..., 2]).all()
    assert tiles[0].min() == 0 and tiles[0].max() == 255  # the channel mean, min-max normalised
    const = visualize.filter_images(np.ones((1, 1, 3, 3)), scale=1)
    assert (const == 128).all()  # a constant filter: mid-grey, no division by zero


# --- the trained run -------------------------------------------------------------------------------


def test_extract_features_pools_and_pads(run_dir):
    run = features.load_run(run_dir)
    assert (run.arch, run.image_size, run.step, set(run.variables)) == (
        "resnet8",
        8,
        44,
        {"params", "batch_stats"},
    )
    assert features.load_run(run_dir, "best").step == 44  # the only evaluation: the best
    images = np.random.default_rng(0).normal(size=(10, 8, 8, 1)).astype(np.float32)
    taps = run.model.apply(run.variables, images, train=False, method=run.model.features)
    # 10 images in batches of 4: the last batch is padded and its padding dropped.
    got = features.extract_features(run.model, run.variables, images, "stage2", batch_size=4)
    np.testing.assert_allclose(
        got, np.asarray(taps["stage2"]).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6
    )
    got = features.extract_features(run.model, run.variables, images, "pre_logits", batch_size=4)
    np.testing.assert_allclose(got, np.asarray(taps["pre_logits"]), rtol=1e-5, atol=1e-6)
    with pytest.raises(features.RunError, match="unknown tap 'fc7'.*pre_logits 64.*stage2 4x4x32"):
        features.extract_features(run.model, run.variables, images, "fc7")


_SAVE_ON_8_DEVICES = """
import json, sys
import jax, jax.numpy as jnp
from jaxcnn import create_model
from jaxcnn.training import sharding
from jaxcnn.rundir import Checkpointer
model = create_model("resnet8", num_classes=10)
mesh = sharding.make_mesh()
init = lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
v = jax.jit(init, out_shardings=sharding.replicated(mesh))()
ckpt = Checkpointer(sys.argv[1])
ckpt.save(3, {"params": v["params"], "batch_stats": v["batch_stats"]}, {"step": 3})
ckpt.wait()
ckpt.close()
json.dump({"arch": "resnet8", "dataset": "digits"}, open(sys.argv[1] + "/config.json", "w"))
"""


def test_load_run_saved_on_another_topology(tmp_path):
    """A run saved on 8 devices (as on a GPU or TPU host) loads on this 1-device process, where
    Orbax's restore without a target refuses it ("Topology mismatch")."""
    out = subprocess.run(
        [sys.executable, "-c", _SAVE_ON_8_DEVICES, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    run = features.load_run(tmp_path)
    assert run.step == 3 and run.variables["params"]["stem"]["conv"]["kernel"].shape == (
        3,
        3,
        1,
        16,
    )
