"""The train step's recipe pieces against hand computations: weight EMA (timm's ModelEmaV3 decay),
gradient accumulation (k micro-batches = one batch of k times the size), float16 with dynamic loss
scaling (skipped steps), Mixup / CutMix wired into the loss, and the loop's non-finite policy."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.training import loop, mixing
from jaxcnn.training.steps import ema_decay_at, init_train_state, train_step


class Small(nn.Module):
    """Conv + dense, no BatchNorm: accumulation must give exactly the whole batch's gradient."""

    num_classes: int = 3
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train):
        x = nn.Conv(4, (3, 3), dtype=self.dtype)(x.astype(self.dtype))
        x = nn.relu(x).reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)


class WithBN(nn.Module):
    num_classes: int = 3

    @nn.compact
    def __call__(self, x, *, train):
        x = nn.Conv(4, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(self.num_classes)(nn.relu(x).reshape(x.shape[0], -1))


def _batch(n=8, seed=1):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "image": jax.random.normal(k1, (n, 6, 6, 1)),
        "label": jax.random.randint(k2, (n,), 0, 3).astype(jnp.int32),
    }


def _timm_decay(step, decay, warmup):
    """timm ModelEmaV3.get_decay(step) with its defaults (update_after_step 0, gamma 1, power 2/3,
    min_decay 0), written from its documentation."""
    step = max(0, step - 1)
    if step <= 0:
        return 0.0
    if warmup:
        return max(min(1 - (1 + step) ** (-2 / 3), decay), 0.0)
    return decay


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_is_the_hand_average_of_the_weights(warmup):
    tx = optax.sgd(0.1, momentum=0.9)
    state = init_train_state(WithBN(), tx, 0, (8, 6, 6, 1), ema=True)
    step = jax.jit(lambda s, b: train_step(s, b, ema_decay=0.9, ema_warmup=warmup))
    hand = jax.tree.map(np.asarray, {"params": state.params, "batch_stats": state.batch_stats})
    decays = []
    for i in range(1, 6):
        state, _ = step(state, _batch(seed=i))
        d = _timm_decay(i, 0.9, warmup)
        decays.append(d)
        now = {"params": state.params, "batch_stats": state.batch_stats}
        hand = jax.tree.map(lambda e, w, d=d: d * e + (1 - d) * np.asarray(w), hand, now)
        got = jax.tree.map(np.asarray, state.ema)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(hand), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert decays[0] == 0.0  # the first update copies the weights, as timm's
    assert [float(ema_decay_at(i, 0.9, warmup)) for i in range(1, 6)] == pytest.approx(decays)
    # The average is not the weights themselves after the first step.
    assert not np.allclose(
        state.ema["params"]["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"]
    )


def test_ema_warmup_reaches_the_decay():
    assert float(ema_decay_at(10_000_000, 0.9998)) == pytest.approx(0.9998)
    assert float(ema_decay_at(2, 0.9998)) == pytest.approx(1 - 2 ** (-2 / 3))


@pytest.mark.parametrize("k", [2, 4])
def test_accumulated_micro_batches_equal_one_big_batch(k):
    tx = optax.sgd(0.5, momentum=0.9)
    state = init_train_state(Small(), tx, 0, (8, 6, 6, 1))
    batch = _batch(8)
    one, m1 = jax.jit(train_step)(state, batch)
    acc, mk = jax.jit(lambda s, b: train_step(s, b, grad_accum_steps=k))(state, batch)
    assert float(mk["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-5)
    assert float(mk["accuracy"]) == float(m1["accuracy"])
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(acc.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_accumulation_threads_batchnorm_statistics_through_the_micro_batches():
    """With BatchNorm, each micro-batch updates the running averages once, in order: the same as
    running the micro-batches as steps one after another (what PyTorch's accumulation does)."""
    tx = optax.sgd(0.0)  # no update: only the statistics move
    state = init_train_state(WithBN(), tx, 0, (8, 6, 6, 1))
    batch = _batch(8)
    acc, _ = jax.jit(lambda s, b: train_step(s, b, grad_accum_steps=2))(state, batch)
    seq = state
    for i in range(2):  # micro-batch i is examples i, i + 2, ...
        seq, _ = train_step(seq, jax.tree.map(lambda x, i=i: x[i::2], batch))
    for a, b in zip(
        jax.tree.leaves(acc.batch_stats), jax.tree.leaves(seq.batch_stats), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_float16_with_loss_scaling_tracks_float32_and_skips_an_overflow():
    tx = optax.sgd(0.1)
    f32 = init_train_state(Small(), tx, 0, (8, 6, 6, 1))
    f16 = init_train_state(Small(dtype=jnp.float16), tx, 0, (8, 6, 6, 1), loss_scale=True)
    assert float(f16.loss_scale.scale) == 2.0**15
    step = jax.jit(train_step)
    a, _ = step(f32, _batch())
    b, mb = step(f16, _batch())
    assert bool(mb["finite"]) and float(mb["loss_scale"]) == 2.0**15
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-2, atol=2e-3)  # float16 arithmetic
    # An input that overflows float16 (6e4 * weights): the step is skipped, the scale halved.
    huge = dict(_batch(), image=jnp.full((8, 6, 6, 1), 6e4))
    c, mc = step(b, huge)
    assert not bool(mc["finite"])
    assert int(c.step) == int(b.step) + 1  # the data moves on
    assert float(c.loss_scale.scale) == 2.0**14
    for x, y in zip(jax.tree.leaves(c.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(jax.tree.leaves(c.opt_state), jax.tree.leaves(b.opt_state), strict=True):
        np.testing.assert_array_equal(x, y)


def test_float16_overflow_in_one_micro_batch_halves_the_scale_once():
    tx = optax.sgd(0.1)
    s = init_train_state(Small(dtype=jnp.float16), tx, 0, (8, 6, 6, 1), loss_scale=True)
    batch = _batch()
    batch["image"] = batch["image"].at[1].set(6e4)  # example 1 is in micro-batch 1 of 2
    out, m = jax.jit(lambda s, b: train_step(s, b, grad_accum_steps=2))(s, batch)
    assert not bool(m["finite"]) and float(out.loss_scale.scale) == 2.0**14
    ok, m = jax.jit(lambda s, b: train_step(s, b, grad_accum_steps=2))(s, _batch())
    assert bool(m["finite"]) and float(ok.loss_scale.scale) == 2.0**15
    assert int(ok.loss_scale.fin_steps) == 1


def test_mixing_in_the_step_is_cross_entropy_against_the_mixed_targets():
    tx = optax.sgd(0.0)
    state = init_train_state(Small(), tx, 0, (8, 6, 6, 1))
    batch = _batch()
    spec = mixing.MixSpec(mixup_alpha=0.4, label_smoothing=0.1)
    _, m = train_step(state, batch, mixing=spec, num_classes=3)
    # The step's draws: its key folded with the mixing stream.
    from jaxcnn.training.steps import _MIX_STREAM

    key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), _MIX_STREAM)
    images, targets, lam = mixing.mix_batch(key, batch["image"], batch["label"], 3, spec)
    logits = np.asarray(state.apply_fn({"params": state.params}, images, train=True))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    hand = float(-(np.asarray(targets) * logp).sum(-1).mean())
    assert float(m["loss"]) == pytest.approx(hand, rel=1e-5)
    dominant = np.where(float(lam) >= 0.5, batch["label"], batch["label"][::-1])
    assert float(m["accuracy"]) == float(np.mean(logits.argmax(-1) == dominant))
    # Off (alphas 0) is the plain step exactly.
    _, plain = train_step(state, batch)
    _, off = train_step(state, batch, mixing=mixing.MixSpec(), num_classes=3)
    assert float(off["loss"]) == float(plain["loss"])


def test_non_finite_policy_skips_up_to_the_limit_then_stops():
    rows = [{"finite": f} for f in (True, False, False, True, False)]  # steps 6..10
    streak, skipped = loop.check_finite(rows, step=10, streak=0, max_skipped=2)
    assert (streak, skipped) == (1, [7, 8, 10])
    # The streak carries across windows: one more bad step is the third in a row.
    with pytest.raises(loop.TrainingError, match=r"at step 12 \(the last of 3 in a row\)"):
        loop.check_finite([{"finite": False}, {"finite": False}], step=12, streak=1, max_skipped=2)
    with pytest.raises(loop.TrainingError, match="at step 7: .* nothing after step 6"):
        loop.check_finite(rows, step=10)  # float32's default: none tolerated
    assert loop.default_max_skipped("float16") == 20
    assert loop.default_max_skipped("float32") == loop.default_max_skipped("bfloat16") == 0
