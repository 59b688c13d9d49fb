"""Every network from Flax NNX through `flax.nnx.bridge` (README's "From Flax NNX" section).

- README's example runs as written: its own assertions check that the loss falls, that the
  BatchNorm statistics change in train mode and not in eval mode, and that eval mode gives linen's
  logits;
- every registered network, traced (not compiled) at its smallest input side: `ToNNX` +
  `lazy_init` holds exactly linen's parameters (same paths, shapes and dtypes; the count equals the
  reference figure) as `nnx.Param`, and linen's `batch_stats` as `nnx.BatchStat` (present exactly
  when linen has them), and nothing else but the rng streams;
- a few networks of different kinds (CIFAR ResNet, LeNet-5 without BatchNorm, MobileNetV2 with
  depthwise convolutions and dropout, GoogLeNet with BatchNorm, dropout and auxiliary heads),
  compiled: README's `nnx.jit` step with `nnx.Optimizer` equals linen's (loss, parameter step,
  BatchNorm update) on the same variables and dropout key, the `dropout` stream of the
  `nnx.Rngs` given to `ToNNX` advances on every call, and eval mode equals linen's `apply` on the
  variables read back with `nnx.state` and leaves them alone.
"""

import math
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxcnn

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "### From Flax NNX"
BATCH, CLASSES = 2, 5


def readme_example() -> str:
    """The one python block of README's NNX section (from its heading to the next heading)."""
    lines = README.read_text().splitlines(keepends=True)
    assert lines.count(HEADING + "\n") == 1, f"README has no single {HEADING!r} section"
    blocks, fence, block = [], None, []
    for line in lines[lines.index(HEADING + "\n") + 1 :]:
        if line.startswith("```"):
            if fence is None:
                fence, block = line[3:].strip(), []
            else:
                blocks += ["".join(block)] if fence == "python" else []
                fence = None
        elif fence is not None:
            block.append(line)
        elif line.startswith("#"):  # the next heading
            break
    assert len(blocks) == 1, f"{HEADING} should hold one python block, found {len(blocks)}"
    return blocks[0]


def test_readme_nnx_example_runs():
    code = readme_example()
    assert "assert" in code  # the example checks itself
    namespace = {"__name__": "readme_nnx_example"}
    exec(compile(code, f"{README}:{HEADING}", "exec"), namespace)
    assert namespace["losses"][-1] < namespace["losses"][0]


def to_nnx(linen_model, x):
    return nnx.bridge.lazy_init(
        nnx.bridge.ToNNX(linen_model, rngs=nnx.Rngs(params=0, dropout=1)), x, train=False
    )


def linen_variables(model) -> dict:
    """The linen variables of a `ToNNX` model, read through NNX's public state API."""
    variables = {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}
    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    if stats:
        variables["batch_stats"] = stats
    return variables


def shapes(tree):
    return jax.tree.map(lambda a: (a.shape, a.dtype), flax.core.unfreeze(tree))


def abstract_init(linen_model, x):
    """`ToNNX` + `lazy_init`, traced, and the variables linen's `init` made on the way (what
    `linen_model.init` returns: `self.variables` at the end of the call), to compare with. One
    trace instead of two: tracing is all this test's time."""
    linen = {}

    def call_and_keep_variables(module, x, train):
        out = module(x, train=train)
        linen.update(
            jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), module.variables)
        )
        return out

    model = nnx.eval_shape(
        lambda: nnx.bridge.lazy_init(
            nnx.bridge.ToNNX(linen_model, rngs=nnx.Rngs(params=0, dropout=1)),
            jnp.zeros(x.shape, x.dtype),
            train=False,
            method=call_and_keep_variables,
        )
    )
    return model, linen


@pytest.mark.parametrize("name", jaxcnn.list_models())
def test_every_network_bridges(name):
    """Abstract init through the bridge holds linen's variables, as NNX variables of their kind."""
    info = jaxcnn.get_model_info(name)
    linen_model = jaxcnn.create_model(name)  # native classes: the reference parameter count
    channels = 1 if name == "lenet5" else 3  # as the reference counts them
    size = info.min_image_size
    x = jax.ShapeDtypeStruct((BATCH, size, size, channels), jnp.float32)
    model, linen = abstract_init(linen_model, x)
    assert set(linen) <= {"params", "batch_stats"}, f"other collections: {sorted(linen)}"

    count = sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    linen_count = sum(math.prod(p.shape) for p in jax.tree.leaves(linen["params"]))
    assert count == linen_count == info.params, (
        f"{count:,} nnx.Param values, linen {linen_count:,}, reference {info.params:,}"
    )
    has_stats = len(jax.tree.leaves(nnx.state(model, nnx.BatchStat))) > 0
    assert has_stats == ("batch_stats" in linen)
    assert shapes(linen_variables(model)) == shapes(linen), "paths, shapes or dtypes differ"
    rest = nnx.state(model, nnx.Not(nnx.Any(nnx.Param, nnx.BatchStat, nnx.RngState)))
    assert not jax.tree.leaves(rest), f"variables of other kinds: {rest}"


def cross_entropy(out, y, aux_weight):
    """CE(logits) + aux_weight * sum of CE(aux) (the trainer's loss, jaxcnn.training.steps)."""
    logits, aux = out if isinstance(out, tuple) else (out, ())
    ce = lambda logits: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()  # noqa: E731
    return ce(logits) + aux_weight * sum(ce(a) for a in aux)


def close(actual, want, tol=1e-4, atol=1e-7):
    """Leaf by leaf, max |difference| <= tol * max |want| + atol (README's parity measure: XLA
    rounds the two programs' fusions differently)."""

    def check(path, a, w):
        a, w = np.asarray(a), np.asarray(w)
        err, scale = np.abs(a - w).max(), np.abs(w).max()
        assert err <= tol * scale + atol, f"{jax.tree_util.keystr(path)}: {err:.3g} of {scale:.3g}"

    jax.tree_util.tree_map_with_path(check, actual, want)


def same(a, b) -> bool:
    return jax.tree.all(
        jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), a, b)
    )


LR = 0.05  # plain SGD: the step is exactly params - LR * gradients


# Shortened builds, where compiling the whole network would take a minute on 2 cores: MobileNetV2's
# first three stages (depthwise convolutions, inverted residual blocks, dropout before the head);
# GoogLeNet as torchvision builds it (BatchNorm, dropout) with one Inception module per stage and
# one aux head (on 4a).
SHORT = {
    "mobilenet_v2": lambda v: {"settings": v.settings[:3]},
    "googlenet_tv": lambda v: {"stages": tuple(s[:1] for s in v.stages), "aux_after": ("4a",)},
}


@pytest.mark.parametrize(
    "name, batch_norm, dropout, aux",
    [
        ("resnet8", True, False, False),
        ("lenet5", False, False, False),
        ("mobilenet_v2", True, True, False),
        ("googlenet_tv", True, True, True),
    ],
)
def test_train_step_and_eval_match_linen(name, batch_norm, dropout, aux):
    """README's NNX train step equals linen's on the same variables and dropout key; eval mode
    equals linen's apply and changes nothing."""
    info = jaxcnn.get_model_info(name)
    short = SHORT.get(name, lambda v: {})(info.variant)
    linen_model = jaxcnn.create_model(name, num_classes=CLASSES, **short)
    aux_weight = getattr(info.variant, "aux_weight", 0.0)
    size = max(info.min_image_size, 16)  # BatchNorm of 2 images at 1x1 rounds badly (1e-4)
    x = jax.random.normal(jax.random.key(1), (BATCH, size, size, 3))
    y = jnp.arange(BATCH) % CLASSES
    model = nnx.jit(lambda x: to_nnx(linen_model, x))(x)  # compiled: op by op takes longer
    opt = nnx.Optimizer(model, optax.sgd(LR), wrt=nnx.Param)
    start = linen_variables(model)
    assert ("batch_stats" in start) == batch_norm

    def next_key(model):
        """The key the model's next call draws from its `dropout` stream (ToNNX's fork of it)."""
        return nnx.clone(model.to_nnx__rngs).dropout()

    def linen_loss(variables, params, key):
        out, updates = linen_model.apply(
            {**variables, "params": params},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        assert isinstance(out, tuple) == aux, "train mode returns (logits, aux) for aux networks"
        return cross_entropy(out, y, aux_weight), updates

    # One compiled program (XLA's fusions round differently from op-by-op execution, by up to 1e-4
    # at these tiny inputs; and compiling is most of the time): linen's step on the variables read
    # from the model, README's NNX step, then eval mode both ways.
    @nnx.jit
    def step_and_reference(model, opt, key, other_key):
        variables = linen_variables(model)
        (want_loss, want_updates), grads = jax.value_and_grad(linen_loss, 1, has_aux=True)(
            variables, variables["params"], key
        )
        other_key_loss = linen_loss(variables, variables["params"], other_key)[0]

        def loss_fn(model):  # README's step, with the aux heads' loss
            out = model(x, train=True, mutable=["batch_stats"])
            return cross_entropy(out, y, aux_weight)

        loss, nnx_grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, nnx_grads)
        trained = linen_variables(model)
        logits = model(x, train=False)
        want_logits = linen_model.apply(linen_variables(model), x, train=False)
        return (
            (loss, want_loss, other_key_loss),
            (trained, grads, want_updates),
            (logits, want_logits, linen_variables(model)),
        )

    key = next_key(model)
    losses, (trained, grads, want_updates), (logits, want_logits, after_eval) = step_and_reference(
        model, opt, key, jax.random.key(5)
    )
    loss, want_loss, other_key_loss = losses
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    assert (other_key_loss != want_loss) == dropout, "the dropout key changes the loss"
    assert not same(trained["params"], start["params"]), "the step changed no parameter"
    step = jax.tree.map(
        lambda t, p: np.asarray(t) - np.asarray(p), trained["params"], start["params"]
    )
    close(step, jax.tree.map(lambda g: -LR * np.asarray(g), grads))
    if batch_norm:
        assert not same(trained["batch_stats"], start["batch_stats"]), "statistics not updated"
        close(trained["batch_stats"], want_updates["batch_stats"])
    # The stream advanced inside nnx.jit: the next train step draws new dropout masks.
    assert not jnp.array_equal(jax.random.key_data(next_key(model)), jax.random.key_data(key))

    # Eval mode: linen's logits on the variables read back; nothing changed.
    assert same(after_eval, trained) and same(linen_variables(model), trained)
    assert logits.shape == (BATCH, CLASSES)
    close(logits, want_logits)
