"""jaxcnn: the classic convolutional networks as Flax linen modules.

Public API: `create_model`, `list_models`, `get_model_info`, `load_pretrained`, `Classifier`
(a trained run or published weights as an image classifier), `__version__`.
The libraries are the folders (`models`, `layers`, `data`, `training`, `weights`, `analysis`,
`reference`); the commands are the top-level modules (`python -m jaxcnn` lists them).
"""

from jaxcnn import _moved
from jaxcnn.models import (
    ALIASES,
    ModelInfo,
    UnknownModelError,
    create_model,
    get_model_info,
    list_models,
)

_moved.install()  # the module paths of jaxcnn 0.1 (jaxcnn.trainer, ...) keep working for a release

__version__ = "0.2.0"


def load_pretrained(spec: str, **kw):
    """Model, variables and zoo entry of published weights; see `jaxcnn.weights.loading`."""
    from jaxcnn.weights.loading import load_pretrained as _load  # Orbax on demand

    return _load(spec, **kw)


def __getattr__(name: str):
    # Classifier is imported on first use: it brings TensorFlow's image ops and Orbax, which
    # `import jaxcnn` for the models alone should not pay for.
    if name == "Classifier":
        from jaxcnn.serving.classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'jaxcnn' has no attribute {name!r}")


__all__ = [
    "ALIASES",
    "Classifier",
    "ModelInfo",
    "UnknownModelError",
    "__version__",
    "create_model",
    "get_model_info",
    "list_models",
    "load_pretrained",
]
