"""The model families and their registry."""

from jaxcnn.models.registry import (
    ALIASES,
    ModelInfo,
    UnknownModelError,
    create_model,
    get_model_info,
    list_models,
    resolve_name,
)

__all__ = [
    "ALIASES",
    "ModelInfo",
    "UnknownModelError",
    "create_model",
    "get_model_info",
    "list_models",
    "resolve_name",
]
