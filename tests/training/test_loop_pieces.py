"""The loop's pure pieces against hand-made cases: which step logs / evaluates / saves, the finite
check, the best / plateau bookkeeping, and the plan's sizes."""

import pytest

from jaxcnn.config import get_config
from jaxcnn.training import loop, optim
from jaxcnn.training.plan import RunPlan


def plan(**overrides) -> RunPlan:
    cfg = get_config()
    cfg.update(overrides)
    # Only the fields actions_at / is_eval_step read; the rest is not needed for a pure check.
    return RunPlan(cfg, None, None, None, 28, 32, steps_per_epoch=10, total_steps=25)


def test_actions_at_by_hand():
    p = plan(log_every_steps=4, checkpoint_every_steps=7, eval_every_epochs=1)
    acts = {s: loop.actions_at(s, p) for s in range(1, 26)}
    assert [s for s, a in acts.items() if a.eval] == [10, 20, 25]  # each epoch end, and the last
    assert [s for s, a in acts.items() if a.save] == [7, 10, 14, 20, 21, 25]
    # Metrics are fetched every 4 steps and before every save (the finite check precedes it).
    assert [s for s, a in acts.items() if a.log] == [4, 7, 8, 10, 12, 14, 16, 20, 21, 24, 25]
    assert loop.actions_at(3, p, interrupted=True) == loop.StepActions(True, False, True)


def test_eval_every_other_epoch_and_always_at_the_end():
    p = plan(eval_every_epochs=2, checkpoint_every_steps=1000, log_every_steps=1000)
    assert [s for s in range(1, 26) if loop.actions_at(s, p).eval] == [20, 25]


def test_check_finite_names_the_first_bad_step():
    rows = [{"finite": True}, {"finite": True}, {"finite": False}, {"finite": False}]
    loop.check_finite(rows[:2], step=12)
    with pytest.raises(loop.TrainingError, match="at step 11: .* nothing after step 10"):
        loop.check_finite(rows, step=12)  # rows are steps 9..12


def test_progress_keeps_the_best_and_round_trips_through_the_checkpoint_meta():
    cfg = get_config()
    p = loop.Progress.fresh(cfg)
    assert [p.record(a) for a in (0.5, 0.7, 0.6, 0.7, 0.8)] == [True, True, False, False, True]
    p.plateau.update(0.8)
    back = loop.Progress.from_meta(p.meta(step=30, epoch=1.5))
    assert back == p and back.best_accuracy == 0.8
    assert p.meta(30, 1.5)["epoch"] == 1.5
    assert isinstance(back.plateau, optim.PlateauState)
