"""EfficientNet B0-B7: counts, the released table, taps, compound scaling, stochastic depth in the
blocks and the model.

Converted-weight parity and torchvision's layout of all eight: tests/weights/test_parity.py;
DropPath itself: tests/layers; the training run: tests/training/test_learns_digits.py.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn import reference
from jaxcnn.models import efficientnet as E

NAMES = [f"efficientnet_b{i}" for i in range(8)]  # counts: the contract test, vs the reference


def _template(model, size: int = 32, channels: int = 3):
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), train=False)
    )


def _variables(module, x, seed: int = 0):
    """Random variables of the template's shapes, made in numpy: a jitted `init` of these networks
    compiles for tens of seconds on CPU, which these tests do not need."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))

    def fill(path, leaf):
        name = path[-1].key
        if name in ("scale", "var"):
            return jnp.ones(leaf.shape, leaf.dtype)
        return jnp.asarray(rng.standard_normal(leaf.shape) * 0.1, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree["params"]))


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_and_registry(name):
    info = jaxcnn.get_model_info(name)
    assert info.params == reference.row(name)["params"]  # torchvision's model, counted
    assert info.resolution == E.SCALING[name][2]


def test_released_table_is_torchvisions():
    """The released (width, depth, resolution, dropout) table against torchvision's own builders:
    width and depth as `efficientnet_bN` passes them to `_efficientnet_conf`, the classifier's
    dropout from the built model. Resolutions are the TF release's (torchvision evaluates its B2
    weights at 288 px, not 260), so they are checked against the paper's values."""
    import inspect
    import re

    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision.models.efficientnet")
    for name, (width, depth, _, dropout) in E.SCALING.items():
        source = inspect.getsource(getattr(tv, name))
        m = re.search(r"width_mult=([\d.]+), depth_mult=([\d.]+)", source)
        assert (float(m[1]), float(m[2])) == (width, depth), name
        with torch.device("meta"):  # shapes only: no memory, no init
            assert getattr(tv, name)().classifier[0].p == dropout, name
    # Tan & Le 2019, released models: B0 224 ... B7 600.
    resolutions = [v[2] for v in E.SCALING.values()]
    assert resolutions == [224, 240, 260, 300, 380, 456, 528, 600]


def test_features_taps_and_any_channel_count():
    model = jaxcnn.create_model("efficientnet_b0", num_classes=7)
    x = jnp.ones((2, 64, 64, 5))
    variables = _template(model, 64, 5)
    taps = jax.eval_shape(lambda v: model.apply(v, x, method=model.features), variables)
    shapes = {k: v.shape for k, v in taps.items()}
    assert shapes == {
        "stem": (2, 32, 32, 32),
        "stage1": (2, 32, 32, 16),
        "stage2": (2, 16, 16, 24),
        "stage3": (2, 8, 8, 40),
        "stage4": (2, 4, 4, 80),
        "stage5": (2, 4, 4, 112),
        "stage6": (2, 2, 2, 192),
        "stage7": (2, 2, 2, 320),
        "final": (2, 2, 2, 1280),
        "pre_logits": (2, 1280),
        "logits": (2, 7),
    }
    with pytest.raises(ValueError, match="NHWC"):
        jax.eval_shape(lambda v: model.apply(v, x[0], train=False), variables)


# ---------------------------------------------------------------- compound scaling


@pytest.mark.parametrize(
    "phi, depth, width, resolution",
    # By hand: 1.2**phi, 1.1**phi, round(224 * 1.15**phi) = round(224, 257.6, 296.24, 340.68).
    [(0, 1.0, 1.0, 224), (1, 1.2, 1.1, 258), (2, 1.44, 1.21, 296), (3, 1.728, 1.331, 341)],
)
def test_compound_formula(phi, depth, width, resolution):
    model, res = E.efficientnet_compound(phi)
    assert res == resolution
    assert model.variant.depth_mult == pytest.approx(depth, rel=1e-12)
    assert model.variant.width_mult == pytest.approx(width, rel=1e-12)
    if phi > 0:  # the released table is not the formula
        w, d, r, _ = E.SCALING[f"efficientnet_b{phi}"]
        assert d < depth and w < width and r < resolution


def test_compound_phi0_is_b0_and_negative_phi_builds():
    model, res = E.efficientnet_compound(0)
    assert (model.variant, res) == (jaxcnn.get_model_info("efficientnet_b0").variant, 224)
    assert _count(_template(model)) == reference.row("efficientnet_b0")["params"]
    small, res = E.efficientnet_compound(-4, num_classes=10)
    assert res == round(224 * 1.15**-4) == 128
    v = small.variant
    assert [sum(b.stage == s for b in v.blocks()) for s in range(1, 8)] == [
        math.ceil(n * 1.2**-4) for *_, n in E.B0_STAGES
    ]
    assert _count(_template(small)) < reference.row("efficientnet_b0")["params"] / 2


# ---------------------------------------------------------------- stochastic depth


def test_mbconv_stochastic_depth_only_in_train_mode():
    """A residual block whose branch is always dropped returns its input in train mode only."""
    spec = E.MBConvSpec(1, 2, 6, 3, 1, 16, 16, drop_rate=1.0)
    block = E.MBConv(spec)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 16))
    variables = _variables(block, x)

    @functools.partial(jax.jit, static_argnames="train")
    def run(train):
        rngs = {"dropout": jax.random.key(2)}
        return block.apply(variables, x, train=train, mutable=["batch_stats"], rngs=rngs)[0]

    np.testing.assert_array_equal(run(True), x)
    assert not np.allclose(run(False), x)


def test_model_stochastic_depth_wired():
    """With dropout off, train-mode outputs still depend on the 'dropout' rng (stochastic depth)."""
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    small = {"num_classes": 10, "width_mult": 0.25, "depth_mult": 0.5, "dropout": 0.0}
    model = jaxcnn.create_model("efficientnet_b0", stochastic_depth_prob=0.5, **small)
    variables = _variables(model, x)

    @jax.jit
    def train(key):
        return model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})

    assert not np.allclose(train(jax.random.key(0))[0], train(jax.random.key(1))[0])
