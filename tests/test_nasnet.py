"""NASNet-A (Large, Mobile) and PNASNet-5 Large: exact counts, the TF-"SAME" padding helpers against
timm's layers, converted-weight parity with timm (Large nets) and pytorchcv (Mobile), taps, modes, a
short training run of a tiny NASNet-A."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.weights import convert
from jaxcnn.models import nasnet

# reference_numbers.json rows nasnet_a_large (timm nasnetalarge), nasnet_a_mobile (pytorchcv
# nasnet_4a1056; Cadene nasnetamobile agrees) and pnasnet5_large (timm pnasnet5large).
REFERENCE_PARAMS = {
    "nasnet_a_large": 88_753_150,
    "nasnet_a_mobile": 5_289_978,
    "pnasnet5large": 86_057_668,
}
# The smallest NASNet-A: one normal cell per stage, 8 filters (2 and 4 in the stem cells).
TINY = {"cells_per_stage": 1, "penultimate_filters": 24 * 8, "stem_filters": 16}


def _template(model, size: int = 32, channels: int = 3, batch: int = 1):
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((batch, size, size, channels)), train=False)
    )


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree["params"]))


def _randomize(model, seed: int = 0) -> None:
    """Random BN affine and running statistics, so eval mode exercises every converted tensor."""
    import torch  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _eval_parity(name: str, torch_model, size: int, batch: int, state_dict=None) -> float:
    """Max relative error of our eval-mode logits against `torch_model`'s, converted weights."""
    import torch  # noqa: PLC0415

    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x)).numpy()
    model = jaxcnn.create_model(name)
    sd = torch_model.state_dict() if state_dict is None else state_dict
    variables = convert.from_torch(name, sd, _template(model, size))
    # One compiled graph beats op-by-op dispatch of these ~10k operations; run once, the graph
    # is not worth XLA's backend optimisation (measured: compile time halved, run time +30%).
    xj = jnp.asarray(x.transpose(0, 2, 3, 1))
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, xj)
    got = np.asarray(apply.compile({"xla_backend_optimization_level": 0})(variables, xj))
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


# ---------------------------------------------------------------- counts and names


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_count_and_registry(name):
    info = jaxcnn.get_model_info(name)
    assert info.params == REFERENCE_PARAMS[name]
    assert (info.resolution, info.min_image_size) == (224 if "mobile" in name else 331, 32)
    assert _count(_template(jaxcnn.create_model(name))) == REFERENCE_PARAMS[name]


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


# ---------------------------------------------------------------- padding against timm's layers


@pytest.mark.parametrize("size", [5, 6, 7, 8, 15])
def test_same_padding_ops_match_timm(size):
    """Strided SAME pads (the odd pixel after), timm's AvgPool2dSame counting its padding, TF's
    average pool not counting it, stride-1 pools not counting it, -inf max-pool padding."""
    torch = pytest.importorskip("torch")
    layers = pytest.importorskip("timm.layers")
    functional = torch.nn.functional

    x = np.random.default_rng(size).standard_normal((2, size, size, 3)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2))

    def check(ours, theirs):
        want = theirs(xt).detach().numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(np.asarray(ours), want, rtol=1e-6, atol=1e-6)

    for k in (1, 3, 5, 7):
        for s in (1, 2):
            lo, hi = nasnet.same_padding(size, k, s)
            assert lo + hi == layers.get_same_padding(size, k, s, 1) and hi - lo in (0, 1)
    for s in (1, 2):
        check(
            nasnet.avg_pool_same(jnp.asarray(x), 3, s, count_padding=s > 1),
            layers.create_pool2d("avg", 3, s, padding="same", count_include_pad=False),
        )
        check(
            nasnet.max_pool_same(jnp.asarray(x), 3, s),
            layers.create_pool2d("max", 3, s, padding="same"),
        )

    def tf_avg(t):  # window sums over window pixel counts, SAME-padded
        def pad(u):
            return layers.pad_same(u, [3, 3], [2, 2])

        return functional.avg_pool2d(pad(t), 3, 2) / functional.avg_pool2d(
            pad(torch.ones_like(t)), 3, 2
        )

    check(nasnet.avg_pool_same(jnp.asarray(x), 3, 2, count_padding=False), tf_avg)


@pytest.mark.parametrize("size", [6, 7])
def test_factorized_reduction_matches_timm(size):
    """Even pixels and odd pixels (shifted, zero past the border) through two 1x1 convs, then BN."""
    torch = pytest.importorskip("torch")
    timm_pnasnet = pytest.importorskip("timm.models.pnasnet")

    theirs = timm_pnasnet.FactorizedReduction(3, 8).eval()
    _randomize(theirs)
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = theirs(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    sd = {k: v.numpy() for k, v in theirs.state_dict().items()}
    bn = "final_path_bn."
    variables = {
        "params": {
            "path_1": {"kernel": sd["path_1.conv.weight"].transpose(2, 3, 1, 0)},
            "path_2": {"kernel": sd["path_2.conv.weight"].transpose(2, 3, 1, 0)},
            "final_path_bn": {"scale": sd[bn + "weight"], "bias": sd[bn + "bias"]},
        },
        "batch_stats": {
            "final_path_bn": {"mean": sd[bn + "running_mean"], "var": sd[bn + "running_var"]}
        },
    }
    got = nasnet.FactorizedReduction(8).apply(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False
    )
    assert got.shape == (2, -(-size // 2), -(-size // 2), 8)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- converted-weight parity


def _pytorchcv_to_cadene(key: str) -> str:
    """pytorchcv's NASNet names -> Cadene's (`pretrainedmodels.nasnetamobile`, the layout our
    converter reads; checked once to give Cadene's exact 1,318 keys). Cadene numbers stage s's
    cells from 6s, as in the Large network."""
    m = re.match(r"features\.stage(\d)\.unit(\d+)\.(.*)", key)
    if m:
        s, j = int(m[1]) - 1, int(m[2]) - 1
        cell = (
            f"cell_{j}"
            if s == 0
            else f"reduction_cell_{s - 1}"
            if j == 0
            else f"cell_{6 * s + j - 1}"
        )
        key = f"{cell}.{m[3]}"
    for a, b in [
        (r"^features\.init_block\.", "conv0."),
        (r"^features\.stem1_unit\.", "cell_stem_0."),
        (r"^features\.stem2_unit\.", "cell_stem_1."),
        (r"^output\.fc\.", "last_linear."),
        (r"\.conv1x1_prev\.", ".conv_prev_1x1."),
        (r"\.conv1x1\.", ".conv_1x1."),
        (r"\.path\.path(\d)\.", r".path_\1."),
        (r"\.path\.bn\.", ".final_path_bn."),
        (
            r"\.comb(\d)_(\w+)\.conv(\d)\.conv\.dw_conv\.",
            r".comb_iter_\1_\2.separable_\3.depthwise_conv2d.",
        ),
        (
            r"\.comb(\d)_(\w+)\.conv(\d)\.conv\.pw_conv\.",
            r".comb_iter_\1_\2.separable_\3.pointwise_conv2d.",
        ),
        (r"\.comb(\d)_(\w+)\.conv(\d)\.bn\.", r".comb_iter_\1_\2.bn_sep_\3."),
    ]:
        key = re.sub(a, b, key)
    return key


@pytest.fixture(scope="module")
def mobile_pytorchcv():
    """pytorchcv's NASNet-A 4@1056 with random BN statistics and its state dict in Cadene names."""
    torch = pytest.importorskip("torch")
    pcv_nasnet = pytest.importorskip("pytorchcv.models.nasnet")

    torch.manual_seed(0)
    net = pcv_nasnet.nasnet_4a1056().eval()
    _randomize(net)
    # pytorchcv pools with a fixed 7x7 window (224 px only); global pooling is the same there.
    net.features.final_pool = torch.nn.AdaptiveAvgPool2d(1)
    return net, {_pytorchcv_to_cadene(k): v for k, v in net.state_dict().items()}


def test_nasnet_a_mobile_parity_with_pytorchcv(mobile_pytorchcv):
    """At 32 px (as at 224) pytorchcv's / Cadene's padding equals TF's SAME: stem input odd, every
    later strided input even."""
    net, sd = mobile_pytorchcv
    assert _eval_parity("nasnet_a_mobile", net, 32, batch=2, state_dict=sd) < 1e-5


@pytest.mark.parametrize(
    "name, options, expected, missing",
    [
        (
            "nasnet_a_mobile",
            {},
            # NASNet keeps a factorized reduction on the cell; Cadene numbers stage s's cells
            # from 6s (our cell_4, the first of stage 2, is its cell_6).
            {"conv0.conv.weight", "cell_stem_1.path_2.conv.weight", "cell_6.final_path_bn.bias"},
            "reduction_cell_1.comb_iter_4_left.bn_sep_2.running_var",  # a statistic, not a weight
        ),
        (
            "pnasnet5large",
            {"num_cells": 3, "penultimate_filters": 20 * 8, "stem_filters": 16},
            {"conv_0.bn.weight", "cell_0.conv_prev_1x1.path_2.conv.weight", "last_linear.bias"},
            "cell_1.comb_iter_4_right.conv.weight",  # the strided identity of a reduction cell
        ),
    ],
)
def test_state_dict_names_and_missing_tensor(name, options, expected, missing):
    """timm / Cadene names both ways; a state dict short of one tensor is refused, naming it."""
    model = jaxcnn.create_model(name, **options)
    template = _template(model)
    variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
    sd = convert.to_torch(name, variables)
    assert expected <= set(sd)
    back = convert.from_torch(name, sd, template)
    assert jax.tree.structure(back) == jax.tree.structure(template)
    assert missing in sd
    with pytest.raises(convert.WeightMismatchError, match=re.escape(f"no tensor {missing!r}")):
        convert.from_torch(name, {k: v for k, v in sd.items() if k != missing}, template)


@pytest.mark.parametrize(
    "name, timm_name",
    [
        ("nasnet_a_large", "nasnetalarge"),  # 25-45 s here, by the machine's load
        ("pnasnet5large", "pnasnet5large"),  # 12-24 s
    ],
)
def test_large_parity_with_timm(name, timm_name):
    """timm's nets at 32 px (their smallest input), batch 1: 15 px after conv0 (odd), then 8, 4, 2,
    1; timm's strided average pools count their padding, as our `avg_pool_counts_padding`."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")

    torch.manual_seed(0)
    net = timm.create_model(timm_name, pretrained=False).eval()
    _randomize(net)
    assert _eval_parity(name, net, 32, batch=1) < 1e-5


# ---------------------------------------------------------------- taps, modes, training


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


@pytest.mark.slow
def test_tiny_nasnet_learns_digits(tmp_path):
    """NASNet-A with one normal cell a stage and 8 filters, 32 px digits (8x8 upscaled): 0.91
    after these 2 epochs (0.95 after 3). Most of the time here is XLA compiling the init (one
    threefry kernel per parameter tensor) and the train step."""
    from jaxcnn.training import loop as trainer  # noqa: PLC0415
    from jaxcnn.config import get_config  # noqa: PLC0415

    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.batch_size, cfg.epochs = "nasnet_a_mobile", "digits", 32, 2
    cfg.arch_options = dict(TINY)
    cfg.image_size, cfg.log_every_steps, cfg.lr = 32, 20, 0.05
    result = trainer.train_and_evaluate(cfg, tmp_path)
    assert result.eval_accuracy > 0.5
