"""Stochastic depth (drop-path) for residual branches."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class DropPath(nn.Module):
    """Drops a residual branch for whole samples: Huang et al. 2016, "Deep Networks with Stochastic
    Depth", per sample as in torchvision's `StochasticDepth(p, mode="row")` and timm's `DropPath`.

    In train mode each sample's branch is kept with probability `1 - rate` and then scaled by
    `1 / (1 - rate)`, so its expectation is unchanged and eval mode (identity) needs no rescaling.
    The mask is drawn from the 'dropout' rng stream, one Bernoulli per sample (axis 0), broadcast
    over the other axes. `rate == 1` zeroes every sample (no division, as torchvision).

    Attributes:
        rate: probability of dropping a sample's branch, in [0, 1].
        deterministic: identity when True; may instead be passed to `__call__`.
    """

    rate: float
    deterministic: bool | None = None

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
        """Args: x: (N, ...) the residual branch. Returns: x with whole samples dropped, same shape."""
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1], got {self.rate}")
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if deterministic or self.rate == 0.0:
            return x
        survival = 1.0 - self.rate
        if survival == 0.0:
            return jnp.zeros_like(x)
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        keep = jax.random.bernoulli(self.make_rng("dropout"), survival, shape)
        return x * (keep.astype(x.dtype) / jnp.asarray(survival, x.dtype))
