"""NASNet-A (Large, Mobile) and PNASNet-5 Large: exact counts, cell plans, taps, modes.

The TF-"SAME" padding helpers against timm's layers: tests/layers; converted-weight parity with
timm (Large nets) and pytorchcv (Mobile) and the state-dict names: tests/weights; the training
run of a tiny NASNet-A: tests/training/test_learns_digits.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn

# The smallest NASNet-A: one normal cell per stage, 8 filters (2 and 4 in the stem cells).
TINY = {"cells_per_stage": 1, "penultimate_filters": 24 * 8, "stem_filters": 16}


def _template(model, size: int = 32, channels: int = 3, batch: int = 1):
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((batch, size, size, channels)), train=False)
    )


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree["params"]))


# ---------------------------------------------------------------- counts and names


@pytest.mark.parametrize("name", ["nasnet_a_large", "nasnet_a_mobile", "pnasnet5large"])
def test_registry_resolutions(name):
    info = jaxcnn.get_model_info(name)  # the counts: the contract test, against the reference
    assert (info.resolution, info.min_image_size) == (224 if "mobile" in name else 331, 32)


def test_aliases():
    assert jaxcnn.get_model_info("pnasnet5_large").name == "pnasnet5large"
    assert jaxcnn.get_model_info("nasnetalarge").name == "nasnet_a_large"
    assert jaxcnn.get_model_info("nasnetamobile").name == "nasnet_a_mobile"


def test_cell_plans():
    """NASNet: N normal cells a stage, reduction cells in between, filters doubling; PNASNet-5:
    12 cells, of which cells 4 and 8 reduce."""
    large = jaxcnn.get_model_info("nasnet_a_large").variant
    body = large.body()
    assert large.filters == 168 and len(body) == 20
    assert [n for n, r, _ in body if r] == ["reduction_cell_0", "reduction_cell_1"]
    assert body[6] == ("reduction_cell_0", True, 336) and body[-1] == ("cell_17", False, 672)
    pnas = jaxcnn.get_model_info("pnasnet5large").variant
    assert pnas.filters == 216 and pnas.reduction_indices() == (4, 8)
    assert [w for _, _, w in pnas.body()] == [216] * 4 + [432] * 4 + [864] * 4


def test_bad_width_is_refused():
    with pytest.raises(ValueError, match="penultimate_filters=1000 must be 24 x a multiple of 4"):
        jaxcnn.create_model("nasnet_a_mobile", penultimate_filters=1000)


# ---------------------------------------------------------------- taps and modes


@pytest.mark.parametrize(
    "name, options, widths",
    [
        ("nasnet_a_mobile", TINY, (8, 48, 96, 192)),  # stem cell 4 x 2; 6 x 8, 6 x 16, 6 x 32
        (
            "pnasnet5large",
            {"num_cells": 3, "penultimate_filters": 20 * 8, "stem_filters": 16},
            (10, 40, 80, 160),  # stem cell 5 x 2; 5 x 8, 5 x 16, 5 x 32
        ),
    ],
)
def test_features_taps_any_channel_count(name, options, widths):
    model = jaxcnn.create_model(name, num_classes=7, **options)
    x = jnp.zeros((2, 64, 64, 1))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    taps = jax.eval_shape(
        lambda v: model.apply(v, x, train=False, method=model.features), variables
    )
    assert taps["conv0"].shape == (2, 31, 31, 16)  # 3x3/2 VALID
    sides = (16, 8, 4, 2)  # SAME: ceil(31 / 2), then halving
    for key, side, width in zip(
        ("cell_stem_0", "stage1", "stage2", "stage3"), sides, widths, strict=True
    ):
        assert taps[key].shape == (2, side, side, width), key
    assert taps["pre_logits"].shape == (2, widths[-1]) and taps["logits"].shape == (2, 7)


def _random_variables(model, x, seed: int = 0):
    """Random parameters and BN statistics from the shapes alone. (flax's jitted init compiles one
    threefry kernel per tensor, ~0.2 s of CPU each here: 85 s for the tiny network's ~300.)"""
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name in ("bias", "mean"):
            value = rng.standard_normal(shape) * 0.1
        else:  # He init on the kernel's fan-in
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, template)


def _compile(fn, *args):
    """jit without XLA's backend optimisation: these graphs run a few times only."""
    return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})


@pytest.mark.slow
def test_gradients_dropout_and_running_statistics():
    """A tiny NASNet-A: finite logits, every parameter gets a gradient, dropout only in train
    mode, eval mode deterministic and reading the running statistics."""
    model = jaxcnn.create_model("nasnet_a_mobile", num_classes=5, **TINY)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 2))
    variables = _random_variables(model, x)

    def evaluate(v):
        return model.apply(v, x, train=False)

    evaluate = _compile(evaluate, variables)
    out = evaluate(variables)
    assert out.shape == (2, 5) and bool(jnp.isfinite(out).all())
    np.testing.assert_array_equal(out, evaluate(variables))
    shifted = {
        **variables,
        "batch_stats": jax.tree.map(lambda a: a + 1.0, variables["batch_stats"]),
    }
    assert not np.allclose(out, evaluate(shifted))

    def loss(params, key):
        y, _ = model.apply(
            {**variables, "params": params},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        return jnp.sum(y**2), y

    grad = _compile(jax.grad(loss, has_aux=True), variables["params"], jax.random.key(2))
    grads, y1 = grad(variables["params"], jax.random.key(2))
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert float(jnp.abs(g).max()) > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"
    _, y2 = grad(variables["params"], jax.random.key(3))
    assert not np.allclose(y1, y2)  # dropout 0.5 before the classifier
