"""The import contract of the package: floors, pure model code, no circles, commands at the top.

Read from the source (every `import` statement, module level and inside functions alike), so that
a lazy import cannot hide a circle or a model file that learns about TensorFlow.
"""

import ast
import importlib
import pathlib
import sys
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "jaxcnn"
COMMANDS = {
    "train",
    "prepare",
    "predict",
    "export",
    "features",
    "neighbors",
    "visualize",
    "summary",
    "bench",
    "__main__",
}
# Floors, lowest first: a module imports only from its own floor or lower ones.
FLOORS = {
    "reference": 0,
    "runtime": 0,
    "integrity": 0,  # checksums of checkpoint contents: numpy, jax, google-crc32c
    "_moved": 0,
    "layers": 1,
    "models": 2,
    "data": 2,
    "rundir": 2,
    "config": 2,
    "weights": 3,
    "training": 4,
    "analysis": 5,
    "serving": 5,
    "cli": 6,
}
# What model code may import besides itself: the numerical stack and the standard library.
PURE = {"jax", "flax", "numpy"}


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


ALL = modules()


def imports_of(name: str) -> set[str]:
    """Absolute names imported by module `name` (a `from X import y` of a submodule y counts as
    X.y)."""
    tree = ast.parse(ALL[name].read_text())
    package = name if ALL[name].name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in ALL else base)
    return out


def internal(name: str) -> set[str]:
    return {m for m in imports_of(name) if m == "jaxcnn" or m.startswith("jaxcnn.")} - {name}


def floor(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) == 1:
        return 7  # the package root: the public API
    if parts[1] in COMMANDS:
        return 8
    return FLOORS.get(parts[1])


def test_every_module_has_a_floor():
    assert [m for m in ALL if floor(m) is None] == []


def test_floors_are_respected():
    bad = [
        f"{m} (floor {floor(m)}) imports {t} (floor {floor(t)})"
        for m in ALL
        for t in internal(m)
        if floor(t) is not None and floor(t) > floor(m)
    ]
    assert bad == []


def test_models_and_layers_import_only_jax_flax_numpy_and_the_standard_library():
    bad = []
    for m in ALL:
        if m.split(".")[1:2] not in (["models"], ["layers"]):
            continue
        for t in imports_of(m):
            top = t.split(".")[0]
            if top == "jaxcnn":
                if t.split(".")[1] not in ("models", "layers", "reference"):
                    bad.append(f"{m} imports {t}")
            elif top not in PURE and top not in sys.stdlib_module_names:
                bad.append(f"{m} imports {t}")
    assert bad == []


def test_families_import_only_layers_base_and_the_registry():
    allowed = {"jaxcnn.models.base", "jaxcnn.models.registry"}
    bad = []
    for m in ALL:
        if not m.startswith("jaxcnn.models.") or m in allowed:
            continue
        for t in internal(m):
            ok = t.startswith("jaxcnn.layers") or t in allowed or t == "jaxcnn.reference"
            # PNASNet-5 is NASNet's cell with another spec: it may build on nasnet.
            ok = ok or (m == "jaxcnn.models.pnasnet" and t == "jaxcnn.models.nasnet")
            if not ok:
                bad.append(f"{m} imports {t}")
    assert bad == []


def test_nothing_imports_a_command():
    bad = [
        f"{m} imports {t}"
        for m in ALL
        for t in internal(m)
        if floor(t) == 8 and not m.endswith("__main__")
    ]
    assert bad == []


def test_no_import_circles():
    graph = {m: {t for t in internal(m) if t in ALL} for m in ALL}
    # A package's __init__ importing its own submodules is not a circle of design.
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t) :], t]))
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_commands_define_no_flags_at_import_and_share_one_shape():
    from absl import flags

    for c in sorted(COMMANDS - {"__main__"}):
        mod = importlib.import_module(f"jaxcnn.{c}")
        assert callable(mod.define_flags) and callable(mod.main), c
        assert mod.__doc__ and f"python -m jaxcnn.{c}" in mod.__doc__, c
        source = ALL[f"jaxcnn.{c}"].read_text()
        assert 'if __name__ == "__main__":\n    cli.run(define_flags, main' in source, c
    # Importing a command defines none of its flags (absl and Orbax define their own on import).
    assert [m for m in flags.FLAGS.flags_by_module_dict() if m.startswith("jaxcnn")] == []


def test_python_m_jaxcnn_lists_every_command(capsys):
    from jaxcnn import __main__ as launcher

    assert launcher.main() == 0
    out = capsys.readouterr().out
    for c in COMMANDS - {"__main__"}:
        assert f"  {c} " in out
    assert set(launcher.COMMANDS) == COMMANDS - {"__main__"}


@pytest.mark.parametrize(
    "old, new, name",
    [
        ("jaxcnn.trainer", "jaxcnn.training.loop", "train_and_evaluate"),
        ("jaxcnn.steps", "jaxcnn.training.steps", "train_step"),
        ("jaxcnn.optim", "jaxcnn.training.optim", "make_optimizer"),
        ("jaxcnn.sharding", "jaxcnn.training.sharding", "make_mesh"),
        ("jaxcnn.checkpoint", "jaxcnn.rundir", "Checkpointer"),
        ("jaxcnn.convert", "jaxcnn.weights.convert", "from_torch"),
        ("jaxcnn.cost", "jaxcnn.analysis.cost", "layer_costs"),
        ("jaxcnn.transfer", "jaxcnn.weights.loading", "merge_variables"),
        ("jaxcnn.transfer", "jaxcnn.training.finetune", "frozen_modules"),
        ("jaxcnn.pretrained", "jaxcnn.weights.loading", "load_pretrained"),
        ("jaxcnn.pretrained", "jaxcnn.weights.zoo", "zoo_entry"),
        ("jaxcnn.runlog", "jaxcnn.rundir", "atomic_path"),
    ],
)
def test_old_module_paths_still_import_with_a_warning(old, new, name):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)
    assert getattr(mod, name) is getattr(importlib.import_module(new), name)
