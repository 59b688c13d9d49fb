"""jaxcnn: the classic convolutional networks as Flax linen modules.

Public API: `create_model`, `list_models`, `get_model_info`, `__version__`.
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

__all__ = [
    "ALIASES",
    "ModelInfo",
    "UnknownModelError",
    "__version__",
    "create_model",
    "get_model_info",
    "list_models",
]
