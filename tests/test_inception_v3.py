"""Inception-v3: exact parameter counts (with and without the auxiliary classifier), smallest input,
taps, the auxiliary-classifier contract, torchvision and timm parity, a short training run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.weights import convert
from jaxcnn.models.inception_v3 import TORCHVISION_BLOCKS, InceptionAux

# Rows inception_v3_tv_aux and inception_v3 of ../shared/reference/reference_numbers.json
# (torchvision.models.inception_v3(aux_logits=True); timm inception_v3 == aux_logits=False).
REFERENCE_PARAMS = {True: 27161264, False: 23834568}
SMALLEST = 75


def _shapes(model, size, channels=3, train=False, method=None):
    """Variables and outputs by shape only (no compilation)."""
    x = jnp.zeros((2, size, size, channels))

    def run():
        variables = model.init(jax.random.key(0), x, train=False)
        out = model.apply(
            variables,
            x,
            train=train,
            method=method,
            mutable=["batch_stats"] if train else False,
            rngs={"dropout": jax.random.key(1)},
        )
        return variables, out[0] if train else out

    return jax.eval_shape(run)


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("aux", [True, False])
def test_parameter_counts(aux):
    model = jaxcnn.create_model("inception_v3", aux_logits=aux)
    variables, _ = _shapes(model, SMALLEST)
    assert _count(variables["params"]) == REFERENCE_PARAMS[aux]
    assert ("AuxLogits" in variables["params"]) == aux
    info = jaxcnn.get_model_info("inception_v3")
    assert info.params == REFERENCE_PARAMS[True]
    assert (info.resolution, info.min_image_size) == (299, SMALLEST)


def test_taps_smallest_input_and_any_channel_count():
    model = jaxcnn.create_model("inception_v3", num_classes=7)
    _, taps = _shapes(model, 299, channels=1, method=model.features)
    assert taps["stem"].shape == (2, 35, 35, 192)
    assert taps["mixed5"].shape == (2, 35, 35, 288)
    assert taps["mixed6"].shape == (2, 17, 17, 768)
    assert taps["mixed7"].shape == (2, 8, 8, 2048)
    assert taps["pre_logits"].shape == (2, 2048)
    assert taps["logits"].shape == taps["aux1"].shape == (2, 7)
    # 75 px: the 8x8 grid is 1x1, and the auxiliary head (which torchvision can only run from a
    # 17x17 map, i.e. 299 px) runs on a 3x3 map in both modes.
    for train in (False, True):
        _, out = _shapes(model, SMALLEST, channels=4, train=train)
        logits, aux = out if train else (out, ())
        assert logits.shape == (2, 7) and [a.shape for a in aux] == ([(2, 7)] if train else [])
        with pytest.raises(ValueError, match="at least 75x75"):
            _shapes(model, SMALLEST - 1, train=train)


def test_aux_contract():
    model = jaxcnn.create_model("inception_v3", num_classes=10, width_mult=0.125)
    assert model.variant.aux_weight == 0.4
    variables, (logits, aux) = _shapes(model, SMALLEST, train=True)
    assert "AuxLogits" in variables["params"]
    assert logits.shape == (2, 10) and len(aux) == 1 and aux[0].shape == (2, 10)
    plain = jaxcnn.create_model("inception_v3", num_classes=10, width_mult=0.125, aux_logits=False)
    variables, logits = _shapes(plain, SMALLEST, train=True)
    assert logits.shape == (2, 10) and "AuxLogits" not in variables["params"]


torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def _randomize(tv_model, seed: int = 0) -> None:
    """Random BN affine and running statistics, so eval mode exercises every converted tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in tv_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def test_eval_parity_with_torchvision_and_timm():
    """Eval-mode logits at 75 px, batch 2, against torchvision (aux_logits=True; its AuxLogits head
    separately, on a 17x17 map) and timm (no auxiliary head). transform_input=False."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    tv = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True).eval()
    _randomize(tv)
    assert not tv.transform_input
    torch.manual_seed(1)
    tm = timm.create_model("inception_v3", pretrained=False).eval()
    _randomize(tm, seed=1)
    x = np.random.default_rng(0).standard_normal((2, 3, SMALLEST, SMALLEST)).astype(np.float32)
    with torch.no_grad():
        want_tv = tv(torch.from_numpy(x)).numpy()
        want_tm = tm(torch.from_numpy(x)).numpy()
        with pytest.raises(RuntimeError):
            tv(torch.zeros(1, 3, SMALLEST - 1, SMALLEST - 1))

    with_aux, _ = _shapes(jaxcnn.create_model("inception_v3"), SMALLEST)
    full = convert.from_torch("inception_v3", tv.state_dict(), with_aux)
    model = jaxcnn.create_model("inception_v3", aux_logits=False)
    template, _ = _shapes(model, SMALLEST)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    xj = jnp.asarray(x.transpose(0, 2, 3, 1))
    no_aux = {c: {k: v for k, v in t.items() if k != "AuxLogits"} for c, t in full.items()}
    assert _rel_err(forward(no_aux, xj), want_tv) < 1e-5
    assert (
        _rel_err(
            forward(convert.from_torch("inception_v3", tm.state_dict(), template), xj), want_tm
        )
        < 1e-5
    )

    # torchvision's auxiliary head on the 17x17x768 map of a 299 px input.
    m = np.random.default_rng(1).standard_normal((2, 768, 17, 17)).astype(np.float32)
    with torch.no_grad():
        want_aux = tv.AuxLogits(torch.from_numpy(m)).numpy()
    head = InceptionAux((128, 768), num_classes=1000)
    got_aux = head.apply(
        {c: t["AuxLogits"] for c, t in full.items()},
        jnp.asarray(m.transpose(0, 2, 3, 1)),
        train=False,
    )
    assert _rel_err(got_aux, want_aux) < 1e-5
    back = convert.to_torch("inception_v3", full)
    sd = {k: v for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(back) == set(sd)


def test_missing_tensor_is_named():
    tv = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    template, _ = _shapes(jaxcnn.create_model("inception_v3"), SMALLEST)
    sd = tv.state_dict()
    del sd["Mixed_6c.branch7x7dbl_4.conv.weight"]
    with pytest.raises(
        convert.WeightMismatchError, match=r"Mixed_6c\.branch7x7dbl_4\.conv\.weight"
    ):
        convert.from_torch("inception_v3", sd, template)
    del sd["AuxLogits.fc.bias"]
    with pytest.raises(convert.WeightMismatchError, match=r"AuxLogits\.fc\.bias"):
        convert.from_torch("inception_v3", sd, template)


@pytest.mark.slow
def test_digits_learns_with_auxiliary_loss(tmp_path):
    """Width 1/4, one block of each kind (5b, 6a, 6b, 7a, 7b) with the auxiliary head on 6b (loss
    weight 0.4), 75 px digits (8x8 upscaled), two epochs: far above chance. Most of its time is XLA
    compilation (the jitted init above all)."""
    from jaxcnn.training import loop as trainer  # noqa: PLC0415 (TensorFlow after torch segfaults: import late)
    from jaxcnn.config import get_config  # noqa: PLC0415

    keep = ("Mixed_5b", "Mixed_6a", "Mixed_6b", "Mixed_7a", "Mixed_7b")
    one_of_each = tuple(b for b in TORCHVISION_BLOCKS if b[0] in keep)
    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.batch_size, cfg.epochs = "inception_v3", "digits", 32, 2
    cfg.arch_options = {"width_mult": 0.25, "blocks": one_of_each, "aux_after": "Mixed_6b"}
    cfg.image_size, cfg.log_every_steps, cfg.lr = SMALLEST, 20, 0.05
    result = trainer.train_and_evaluate(cfg, tmp_path)
    assert result.eval_accuracy > 0.8
