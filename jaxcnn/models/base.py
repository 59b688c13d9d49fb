"""What every classifier of the zoo shares: attributes, `__call__` / `features`, input checks."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def check_image_batch(x: jax.Array, name: str) -> None:
    """Raises a ValueError unless `x` is a batch of NHWC images."""
    if x.ndim != 4:
        raise ValueError(
            f"{name} expects a batch of NHWC images of shape (N, H, W, C); got shape {tuple(x.shape)}"
            + (" (add a batch axis: x[None])" if x.ndim == 3 else "")
        )


class Classifier(nn.Module):
    """Base of the zoo's networks: a variant (frozen dataclass), a head, dtypes.

    Subclasses implement `_forward(x, train) -> dict` as their one `@nn.compact` method, returning
    named taps that end with `pre_logits` and `logits`; each family's class docstring lists its taps.

    Attributes:
        variant: the architecture, as data (each family's `VARIANTS`).
        num_classes: classifier outputs.
        dtype: computation dtype (e.g. jnp.bfloat16 for mixed precision).
        param_dtype: parameter dtype.
    """

    variant: Any
    num_classes: int = 1000
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Classifies a batch.

        Args:
            x: images, (N, H, W, C), any channel count.
            train: batch statistics and their update, dropout (True), or running statistics (False).

        Returns:
            Logits, (N, num_classes).
        """
        return self._forward(x, train)["logits"]

    def features(self, x: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """Named intermediate activations for transfer learning (see the class docstring).

        Args:
            x: images, (N, H, W, C).
            train: as in `__call__`.

        Returns:
            name -> array; always `pre_logits` (N, D) and `logits` (N, num_classes).
        """
        return self._forward(x, train)

    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        raise NotImplementedError

    @property
    def _kw(self) -> dict[str, Any]:
        """dtype keyword arguments for submodules."""
        return {"dtype": self.dtype, "param_dtype": self.param_dtype}
