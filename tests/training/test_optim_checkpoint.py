"""Schedules against hand-computed values; the checkpoint retention policy."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxcnn.rundir import Checkpointer
from jaxcnn.training import optim


def cfg(**kw):
    c = ml_collections.ConfigDict(
        dict(
            lr=0.1,
            schedule="constant",
            warmup_epochs=0.0,
            decay_epochs=30,
            milestones=(),
            gamma=0.1,
            optimizer="sgd",
            momentum=0.9,
            nesterov=False,
            weight_decay=0.0,
            wd_exclude_bn_bias=True,
        )
    )
    c.update(kw)
    return c


def lr_at(c, step, per_epoch=10, total=1000):
    return float(optim.make_schedule(c, per_epoch, total)(step))


def test_step_decay_divides_by_ten_every_30_epochs():
    c = cfg(schedule="step", decay_epochs=30)
    assert [lr_at(c, s) for s in (0, 299, 300, 599, 600)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001]
    )


def test_multistep_and_warmup():
    c = cfg(schedule="multistep", milestones=(30, 60), warmup_epochs=1)
    # Linear warmup 0 -> 0.1 over the first epoch (10 steps), then /10 at epochs 30 and 60.
    assert lr_at(c, 0) == 0.0 and lr_at(c, 5) == pytest.approx(0.05)
    assert [lr_at(c, s) for s in (10, 299, 300, 599, 600)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001]
    )


def test_cosine_ends_at_zero_and_exponential():
    c = cfg(schedule="cosine")
    assert lr_at(c, 500) == pytest.approx(0.05) and lr_at(c, 1000) == pytest.approx(0.0, abs=1e-9)
    c = cfg(schedule="exponential", gamma=0.5)
    assert lr_at(c, 20) == pytest.approx(0.1 * 0.25)


def test_sgd_weight_decay_mask_and_plateau_scale():
    """One SGD step by hand: update = -lr * scale * (grad + wd * w) for kernels, no decay for
    biases / BN (1-D) parameters."""
    c = cfg(weight_decay=0.5, momentum=0.0)
    tx = optim.make_optimizer(c, optim.make_schedule(c, 10, 100))
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    grads = {"kernel": jnp.full((2, 2), 0.2), "bias": jnp.full((2,), 0.2)}
    state = tx.init(params)
    state = optim.with_lr_scale(state, 0.1)
    updates, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["kernel"], -0.1 * 0.1 * (0.2 + 0.5 * 1.0), rtol=1e-6)
    np.testing.assert_allclose(updates["bias"], -0.1 * 0.1 * 0.2, rtol=1e-6)


def test_checkpoints_keep_latest_n_and_the_best(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2)
    for step, acc in enumerate([0.5, 0.9, 0.7, 0.6], start=1):
        state = {"w": np.full((3,), float(step))}
        ckpt.save(step, state, {"accuracy": acc}, best=acc == 0.9)
    ckpt.wait()
    assert ckpt.latest.all_steps() == [3, 4]
    best, meta = ckpt.restore({"w": np.zeros(3)}, which="best")
    np.testing.assert_array_equal(best["w"], [2.0, 2.0, 2.0])
    assert meta == {"accuracy": 0.9}
    latest, _ = ckpt.restore({"w": np.zeros(3)})
    np.testing.assert_array_equal(latest["w"], [4.0, 4.0, 4.0])
    ckpt.close()
