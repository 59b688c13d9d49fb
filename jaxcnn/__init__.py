"""jaxcnn: the classic convolutional networks as Flax linen modules.

Public API: `create_model`, `list_models`, `get_model_info`, `load_pretrained`, `__version__`.
"""

from jaxcnn.models import (
    ALIASES,
    ModelInfo,
    UnknownModelError,
    create_model,
    get_model_info,
    list_models,
)

__version__ = "0.1.0"


def load_pretrained(spec: str, **kw):
    """Model, variables and zoo entry of published weights; see `jaxcnn.pretrained`."""
    from jaxcnn.pretrained import load_pretrained as _load  # noqa: PLC0415 (Orbax on demand)

    return _load(spec, **kw)


__all__ = [
    "ALIASES",
    "ModelInfo",
    "UnknownModelError",
    "__version__",
    "create_model",
    "get_model_info",
    "list_models",
    "load_pretrained",
]
