"""The training step's loss: main and auxiliary classifiers, checked against a hand computation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.training.steps import init_train_state, train_step


class TwoHeads(nn.Module):
    """A linear main head and a linear auxiliary head; train mode returns both, as GoogLeNet."""

    @nn.compact
    def __call__(self, x, *, train):
        x = x.reshape(x.shape[0], -1)
        main, aux = nn.Dense(3, name="main")(x), nn.Dense(3, name="aux")(x)
        return (main, (aux,)) if train else main


def _hand_ce(logits, labels):
    logp = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(labels)), labels]))


def test_aux_loss_weighting():
    model = TwoHeads()
    state = init_train_state(model, optax.sgd(0.0), seed=0, input_shape=(4, 2, 2, 1))
    batch = {
        "image": jax.random.normal(jax.random.key(1), (4, 2, 2, 1)),
        "label": jnp.array([0, 1, 2, 1], jnp.int32),
    }
    x = np.asarray(batch["image"]).reshape(4, -1)
    p = jax.tree.map(np.asarray, state.params)
    main = x @ p["main"]["kernel"] + p["main"]["bias"]
    aux = x @ p["aux"]["kernel"] + p["aux"]["bias"]
    labels = np.asarray(batch["label"])
    for weight in (0.0, 0.3):
        _, metrics = train_step(state, batch, aux_weight=weight)
        expected = _hand_ce(main, labels) + weight * _hand_ce(aux, labels)
        np.testing.assert_allclose(float(metrics["loss"]), expected, rtol=1e-5)
        # Accuracy is the main head's.
        assert float(metrics["accuracy"]) == float(np.mean(np.argmax(main, -1) == labels))
