"""Local response normalisation across channels (Krizhevsky et al. 2012, Sec. 3.3)."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class LocalResponseNorm(nn.Module):
    """`b_c = a_c / (k + alpha / size * sum_{c' near c} a_{c'}^2) ** beta`, as torch.nn.LocalResponseNorm.

    The paper writes `alpha * sum` with alpha = 1e-4; PyTorch (and Caffe) divide alpha by the window
    size. The defaults are the paper's n=5, k=2, beta=0.75 in PyTorch's convention.

    Attributes:
        size: channels in the window (centred; `size // 2` before, `(size - 1) // 2` after).
        alpha, beta, k: the constants of the formula.
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    def __call__(self, x: jax.Array) -> jax.Array:
        """Args: x: (N, H, W, C). Returns: the same shape."""
        sq = jnp.square(x.astype(jnp.float32))
        sq = jnp.pad(sq, ((0, 0), (0, 0), (0, 0), (self.size // 2, (self.size - 1) // 2)))
        window = jax.lax.reduce_window(
            sq, 0.0, jax.lax.add, (1, 1, 1, self.size), (1, 1, 1, 1), "VALID"
        )
        div = (self.k + self.alpha / self.size * window) ** self.beta
        return (x / div).astype(x.dtype)
