"""README's two commands stay true: CI runs the test command verbatim; recipes load."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_ci_runs_the_readme_test_command():
    main_job, tests = readme_commands()
    assert main_job.endswith("python -m jaxcnn.train")
    assert tests.endswith("python -m pytest -q -n 2 --durations=15")  # one worker per core here
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
    # The lint gate runs after the tests, in the venv the test command made; then the smoke
    # subset on Python 3.12 with the newest jax, in a venv of its own.
    after = ["ruff check .", "ruff format --check .", "bash .ci/smoke-py312"]
    assert ci[ci.index(tests) + 1 :] == after


def test_resnet_paper_recipe():
    import importlib.util

    from jaxcnn.training import optim
    from jaxcnn.training.loop import validate

    spec = importlib.util.spec_from_file_location(
        "recipe", ROOT / "experiments" / "resnet_paper.py"
    )
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    cfg = recipe.get_config()
    validate(cfg)
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == (0.1, 0.9, 1e-4, 256)
    assert cfg.schedule == "plateau" and cfg.plateau_factor == 0.1
    # The plateau rule: patience 5 evaluations without improvement, then lr / 10.
    p = optim.PlateauState(factor=0.1, patience=2)
    assert [p.update(a) for a in (0.5, 0.6, 0.6, 0.6, 0.6, 0.7)] == [False] * 4 + [True, False]
    assert p.scale == 0.1
