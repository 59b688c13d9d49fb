"""GoogLeNet: exact parameter counts of the paper's and torchvision's builds (with and without the
auxiliary classifiers), the Inception module, the auxiliary-classifier contract, smallest inputs,
the paper's auxiliary head.

Torchvision parity (logits and both auxiliary heads): tests/weights/test_parity.py; the training
run: tests/training/test_learns_digits.py.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import traced

import jaxcnn
from jaxcnn import reference
from jaxcnn.layers.pooling import flatten_nchw
from jaxcnn.models.googlenet import TABLE1, InceptionAux, InceptionModule, InceptionSpec

# Rows googlenet_paper_aux, googlenet_paper, googlenet_tv_aux, googlenet_tv of
# jaxcnn/reference/reference_numbers.json (paper-faithful build; torchvision.models.googlenet).
REFERENCE_ROWS = {  # the rows of jaxcnn/reference/reference_numbers.json
    ("googlenet", True): "googlenet_paper_aux",
    ("googlenet", False): "googlenet_paper",
    ("googlenet_tv", True): "googlenet_tv_aux",
    ("googlenet_tv", False): "googlenet_tv",
}
SMALLEST = {"googlenet": 31, "googlenet_tv": 15}


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name, aux", list(REFERENCE_ROWS))
def test_parameter_counts(name, aux):
    model = jaxcnn.create_model(name, aux_logits=aux)
    variables, _ = traced(model, SMALLEST[name])
    assert _count(variables["params"]) == reference.row(REFERENCE_ROWS[(name, aux)])["params"]
    assert ("aux1" in variables["params"]) == aux
    info = jaxcnn.get_model_info(name)
    assert info.params == reference.row(REFERENCE_ROWS[(name, True)])["params"]
    assert info.min_image_size == SMALLEST[name] and info.resolution == 224


def test_table1_module_widths_chain():
    """Each Inception module's concatenated output is the next one's input (Table 1)."""
    outs = [spec.out_channels for stage in TABLE1 for spec in stage]
    assert outs == [256, 480, 512, 512, 512, 528, 832, 832, 1024]


def test_inception_module_of_the_lecture():
    """The bottleneck module on 28x28x256 (1x1 128, 3x3 192 after a 64 reduction, 5x5 96 after a
    64 reduction, pool projection 64): depth 480 and 346,112 convolution weights
    (reference_numbers.md, "naive vs bottleneck Inception module")."""
    module = InceptionModule(InceptionSpec(128, 64, 192, 64, 96, 64))
    x = jnp.zeros((1, 28, 28, 256))
    variables, y = jax.eval_shape(
        lambda: module.init_with_output(jax.random.key(0), x, train=False)[::-1]
    )
    assert y.shape == (1, 28, 28, 480)
    kernels = [v for p, v in jax.tree_util.tree_leaves_with_path(variables) if "kernel" in str(p)]
    assert sum(int(np.prod(k.shape)) for k in kernels) == 346112
    assert variables["params"]["conv5x5"]["conv"]["kernel"].shape == (5, 5, 64, 96)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_tv"])
def test_smallest_input_taps_and_any_channel_count(name):
    size = SMALLEST[name]
    model = jaxcnn.create_model(name, num_classes=7)
    _, taps = traced(model, size, channels=1, method=model.features)
    assert taps["logits"].shape == taps["aux1"].shape == taps["aux2"].shape == (2, 7)
    assert taps["pre_logits"].shape == (2, 1024)
    assert taps["stem"].shape[-1] == 192 and taps["inception5"].shape[1:] == (1, 1, 1024)
    _, taps = traced(model, 224, channels=5, method=model.features)
    assert taps["stem"].shape == (2, 28, 28, 192)
    assert taps["inception3"].shape == (2, 28, 28, 480)
    assert taps["inception4"].shape == (2, 14, 14, 832)
    assert taps["inception5"].shape == (2, 7, 7, 1024)
    for train in (False, True):
        with pytest.raises(ValueError, match="too small"):
            traced(model, size - 1, train=train)


def test_aux_contract():
    """train=True: (logits, (aux1, aux2)); train=False: logits; init(train=False) builds the heads;
    aux_logits=False: no heads, logits in both modes."""
    model = jaxcnn.create_model("googlenet", num_classes=10, width_mult=0.125)
    assert model.variant.aux_weight == 0.3
    variables, (logits, aux) = traced(model, 32, train=True)
    assert {"aux1", "aux2"} <= set(variables["params"])
    assert logits.shape == (2, 10) and [a.shape for a in aux] == [(2, 10), (2, 10)]
    _, logits = traced(model, 32, train=False)
    assert logits.shape == (2, 10)
    plain = jaxcnn.create_model("googlenet", num_classes=10, width_mult=0.125, aux_logits=False)
    variables, logits = traced(plain, 32, train=True)
    assert logits.shape == (2, 10) and not {"aux1", "aux2"} & set(variables["params"])


def test_paper_aux_head_pools_5x5_stride_3():
    """At 224 px (a 14x14 map) the paper's head pools 5x5/3 to 4x4, then 1x1 conv + ReLU, FC + ReLU
    and the classifier; torchvision's adaptive 4x4 pool gives other windows."""
    variant = dataclasses.replace(
        jaxcnn.get_model_info("googlenet").variant, aux_channels=8, aux_hidden=16
    )
    head = InceptionAux(variant, num_classes=5)
    x = jax.random.normal(jax.random.key(0), (2, 14, 14, 12))
    template = jax.eval_shape(lambda: head.init(jax.random.key(1), x, train=False))
    # numpy weights: a (jitted or eager) init compiles its random draws for seconds on CPU
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda t: rng.standard_normal(t.shape).astype(np.float32), template)
    p = variables["params"]
    pooled = nn.avg_pool(x, (5, 5), (3, 3))
    y = jax.nn.relu(pooled @ p["conv"]["conv"]["kernel"][0, 0] + p["conv"]["conv"]["bias"])
    y = jax.nn.relu(flatten_nchw(y) @ p["fc"]["kernel"] + p["fc"]["bias"])
    want = y @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(head.apply(variables, x, train=False), want, rtol=1e-5, atol=1e-6)
    adaptive = InceptionAux(dataclasses.replace(variant, aux_pool="adaptive"), num_classes=5)
    assert not np.allclose(adaptive.apply(variables, x, train=False), want, atol=1e-4)
