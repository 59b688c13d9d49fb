"""Inception-v3: exact parameter counts (with and without the auxiliary classifier), smallest input,
taps, the auxiliary-classifier contract.

Torchvision and timm parity: tests/weights/test_parity.py; the training run:
tests/training/test_learns_digits.py.
"""

import jax
import numpy as np
import pytest
from helpers import traced

import jaxcnn
from jaxcnn import reference

# Rows inception_v3_tv_aux and inception_v3 of jaxcnn/reference/reference_numbers.json
# (torchvision.models.inception_v3(aux_logits=True); timm inception_v3 == aux_logits=False).
# Rows of jaxcnn/reference/reference_numbers.json: with and without the auxiliary head.
REFERENCE_ROWS = {True: "inception_v3_tv_aux", False: "inception_v3"}
SMALLEST = 75


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("aux", [True, False])
def test_parameter_counts(aux):
    model = jaxcnn.create_model("inception_v3", aux_logits=aux)
    variables, _ = traced(model, SMALLEST)
    assert _count(variables["params"]) == reference.row(REFERENCE_ROWS[aux])["params"]
    assert ("AuxLogits" in variables["params"]) == aux
    info = jaxcnn.get_model_info("inception_v3")
    assert info.params == reference.row(REFERENCE_ROWS[True])["params"]
    assert (info.resolution, info.min_image_size) == (299, SMALLEST)


def test_taps_smallest_input_and_any_channel_count():
    model = jaxcnn.create_model("inception_v3", num_classes=7)
    _, taps = traced(model, 299, channels=1, method=model.features)
    assert taps["stem"].shape == (2, 35, 35, 192)
    assert taps["mixed5"].shape == (2, 35, 35, 288)
    assert taps["mixed6"].shape == (2, 17, 17, 768)
    assert taps["mixed7"].shape == (2, 8, 8, 2048)
    assert taps["pre_logits"].shape == (2, 2048)
    assert taps["logits"].shape == taps["aux1"].shape == (2, 7)
    # 75 px: the 8x8 grid is 1x1, and the auxiliary head (which torchvision can only run from a
    # 17x17 map, i.e. 299 px) runs on a 3x3 map in both modes.
    for train in (False, True):
        _, out = traced(model, SMALLEST, channels=4, train=train)
        logits, aux = out if train else (out, ())
        assert logits.shape == (2, 7) and [a.shape for a in aux] == ([(2, 7)] if train else [])
        with pytest.raises(ValueError, match="at least 75x75"):
            traced(model, SMALLEST - 1, train=train)


def test_aux_contract():
    model = jaxcnn.create_model("inception_v3", num_classes=10, width_mult=0.125)
    assert model.variant.aux_weight == 0.4
    variables, (logits, aux) = traced(model, SMALLEST, train=True)
    assert "AuxLogits" in variables["params"]
    assert logits.shape == (2, 10) and len(aux) == 1 and aux[0].shape == (2, 10)
    plain = jaxcnn.create_model("inception_v3", num_classes=10, width_mult=0.125, aux_logits=False)
    variables, logits = traced(plain, SMALLEST, train=True)
    assert logits.shape == (2, 10) and "AuxLogits" not in variables["params"]
