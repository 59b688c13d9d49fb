"""Every registered architecture, traced (not compiled) at the smallest input side it accepts.

For each name of `jaxcnn.list_models()`:
- at the native resolution (3 channels, native classes), the parameter count equals the
  registry's reference figure (`jaxcnn.reference`: measured on torchvision / timm / pytorchcv or
  paper-faithful builds, never on jaxcnn), so that every registered name has an exact count check;
  `features()` in eval mode gives `pre_logits` (N, D) and `logits` (N, classes), every tap
  batch-first, and the convolution + linear MACs counted by `jaxcnn.cost` on that program equal
  the registry's reference figure;
- at the smallest input side, with 2 input channels and 5 classes:
  - eval mode draws no random numbers (deterministic, no dropout / drop-path), train mode draws them
  exactly when the variant declares a non-zero dropout / drop-path rate;
  - in train mode every parameter reaches the output (a gradient can flow to it: checked on the
    traced program, following calls and excluding `stop_gradient`), and BatchNorm statistics
    come back updated with their shapes.
Tracing instead of compiling keeps this at a few seconds per network on 2 cores; the numeric checks
(finite values, non-zero gradients, actual dropout) run on one network per family in
tests/models/test_registry_and_resnets.py and the family files, and in
tests/training/test_learns_digits.py.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import pytest
from jaxpr_tools import draws_random_numbers, inputs_reaching_outputs

import jaxcnn
from jaxcnn import reference
from jaxcnn.analysis import cost
from jaxcnn.models.base import Classifier

BATCH, CHANNELS, CLASSES = 2, 2, 5


def _declares_dropout(variant) -> bool:
    """Whether any rate-like field whose name mentions dropping is non-zero."""
    values = [getattr(variant, f.name) for f in dataclasses.fields(variant) if "drop" in f.name]
    return any(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in values)


@pytest.mark.parametrize("name", jaxcnn.list_models())
def test_traced_contract(name):
    info = jaxcnn.get_model_info(name)

    # Native resolution, eval mode: taps, determinism, MACs. The reference counts LeNet-5 on
    # 1-channel digits, every other network on RGB.
    model = jaxcnn.create_model(name)
    channels = 1 if name == "lenet5" else 3
    x = jax.ShapeDtypeStruct((BATCH, info.resolution, info.resolution, channels), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    params = sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"]))
    assert params == info.params, f"{params:,} parameters != reference {info.params:,}"
    jaxpr, taps = jax.make_jaxpr(
        lambda v, x: model.apply(v, x, train=False, method=model.features), return_shape=True
    )(variables, x)
    assert taps["logits"].shape == (BATCH, info.num_classes)
    assert len(taps["pre_logits"].shape) == 2 and taps["pre_logits"].shape[0] == BATCH
    for k, t in taps.items():
        assert t.shape[0] == BATCH, f"tap {k} is not batch-first: {t.shape}"
    assert not draws_random_numbers(jaxpr), "eval mode must be deterministic"
    # Count what the logits need (not auxiliary heads, which are taps too).
    logits_index = sorted(taps).index("logits")
    rows = cost.costs_of_program(jaxpr, variables, x.shape, outputs=[logits_index])
    macs = sum(r.macs for r in rows)
    expected = reference.figures(name, jaxcnn.models.registry.reference_keys()[name])[1]
    assert macs == expected == info.macs, f"MACs {macs:,} != reference {expected:,}"
    if type(model).__call__ is not Classifier.__call__:
        logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
        assert logits.shape == (BATCH, info.num_classes), "eval __call__ returns the logits"

    # Smallest input, any channel count, train mode.
    model = jaxcnn.create_model(name, num_classes=CLASSES)
    size = info.min_image_size
    x = jax.ShapeDtypeStruct((BATCH, size, size, CHANNELS), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)

    # Train mode: every parameter reaches the outputs; dropout exactly when declared.
    params = variables["params"]
    others = {k: v for k, v in variables.items() if k != "params"}

    def train_fn(p, others, x, key):
        out, updates = model.apply(
            {"params": p, **others}, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}
        )
        return jax.tree.leaves(out), updates

    key = jax.eval_shape(lambda: jax.random.key(0))
    jaxpr, (outs, updates) = jax.make_jaxpr(train_fn, return_shape=True)(params, others, x, key)
    assert outs[0].shape == (BATCH, CLASSES)
    assert all(o.shape == (BATCH, CLASSES) for o in outs), "aux logits must be (N, classes)"
    if isinstance(model, Classifier) and len(outs) > 1:
        assert hasattr(info.variant, "aux_weight"), "a network with aux heads declares aux_weight"
    # Only the logits count (the BatchNorm updates also depend on parameters): the first outputs.
    reached = inputs_reaching_outputs(jaxpr, num_outputs=len(outs))
    leaves = jax.tree_util.tree_leaves_with_path(params)
    unreached = [
        jax.tree_util.keystr(path) for i, (path, _) in enumerate(leaves) if not reached >> i & 1
    ]
    assert not unreached, f"parameters that reach no output: {unreached[:5]}"
    assert jax.tree.map(lambda a: a.shape, updates.get("batch_stats", {})) == jax.tree.map(
        lambda a: a.shape, others.get("batch_stats", {})
    )
    assert draws_random_numbers(jaxpr) == _declares_dropout(info.variant), (
        "train mode must draw random numbers exactly when the variant declares dropout"
    )
