"""The module paths of jaxcnn 0.1 that moved in 0.2, kept importable for one release.

`import jaxcnn.trainer` (or `from jaxcnn import trainer`) still works and gives the module's new
home, with a DeprecationWarning naming it; the old paths go away in jaxcnn 0.3. One table and a
small import hook instead of a dozen one-line files, so that the package's top level shows only
what is really there. Where one old module was split in two, its old name gives a module holding
the public names of both.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

# old module -> its new home(s).
MOVED: dict[str, tuple[str, ...]] = {
    "jaxcnn.trainer": ("jaxcnn.training.loop",),
    "jaxcnn.steps": ("jaxcnn.training.steps",),
    "jaxcnn.optim": ("jaxcnn.training.optim",),
    "jaxcnn.sharding": ("jaxcnn.training.sharding",),
    "jaxcnn.checkpoint": ("jaxcnn.rundir",),
    "jaxcnn.runlog": ("jaxcnn.rundir",),
    "jaxcnn.transfer": ("jaxcnn.weights.loading", "jaxcnn.training.finetune"),
    "jaxcnn.convert": ("jaxcnn.weights.convert",),
    "jaxcnn.pretrained": ("jaxcnn.weights.zoo", "jaxcnn.weights.loading"),
    "jaxcnn.zoo_data": ("jaxcnn.weights.zoo",),
    "jaxcnn.cost": ("jaxcnn.analysis.cost", "jaxcnn.analysis.xla_cost"),
    "jaxcnn.models.shufflenet": ("jaxcnn.models.shufflenet_v2",),
    "jaxcnn.models.wrn": ("jaxcnn.models.wide_resnet_cifar",),
    "jaxcnn.accuracy": ("jaxcnn.reference",),
}
# Names that changed as well as their module.
RENAMED: dict[str, dict[str, str]] = {"jaxcnn.runlog": {"RunLog": "MetricsLog"}}


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        targets = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {' and '.join(targets)}; the old path goes away in jaxcnn 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        modules = [importlib.import_module(t) for t in targets]
        renamed = RENAMED.get(spec.name, {})
        if len(modules) == 1 and not renamed:
            return modules[0]  # the very same module object: private names and patches work too
        merged = types.ModuleType(spec.name, f"Moved to {' and '.join(targets)}.")
        for m in modules:
            merged.__dict__.update({k: v for k, v in vars(m).items() if not k.startswith("__")})
        for old, new in renamed.items():
            setattr(merged, old, getattr(merged, new))
        return merged

    def exec_module(self, module):
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, _Loader())
        return None


def install() -> None:
    """Puts the finder on `sys.meta_path` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
