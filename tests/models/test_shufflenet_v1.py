"""ShuffleNet v1 (g = 1, 2, 3, 4, 8; widths 0.5x-2x): exact counts against pytorchcv, Table 1, the
unit's details.

Converted-weight parity with pytorchcv's ShuffleNet: tests/weights/test_parity.py; the training
run: tests/training/test_learns_digits.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcnn
from jaxcnn.models import shufflenet_v1 as S

# Parameter counts (1000 classes). shufflenet_v1_g3: reference_numbers.json row "shufflenet_v1_g3"
# (pytorchcv shufflenet_g3_w1). The others: pytorchcv 0.0.74 shufflenet_g{1,2,4,8}_w1 and
# shufflenet_g3_wd2; x1_5 and x2_0: pytorchcv's ShuffleNet class with the same stage widths and stem
# (it names no such model); test_counts_match_pytorchcv rebuilds each.
NAMES = (
    "shufflenet_v1_g1",
    "shufflenet_v1_g2",
    "shufflenet_v1_g3",
    "shufflenet_v1_g4",
    "shufflenet_v1_g8",
    "shufflenet_v1_g3_x0_5",
    "shufflenet_v1_g3_x1_5",
    "shufflenet_v1_g3_x2_0",
)


def _template(model, size: int = 32, channels: int = 3):
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), train=False)
    )


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree["params"]))


def _pytorchcv(variant: S.ShuffleNetV1Variant):
    """pytorchcv's ShuffleNet with the variant's widths, global (not fixed 7x7) average pooling so
    that it runs below 224 px (the same function at 224)."""
    torch = pytest.importorskip("torch")
    pcv = pytest.importorskip("pytorchcv.models.shufflenet")
    stem, stages = variant.widths()
    net = pcv.ShuffleNet(
        [[c] * r for c, r in zip(stages, variant.repeats, strict=True)], stem, variant.groups
    )
    net.features.final_pool = torch.nn.AdaptiveAvgPool2d(1)
    return net


def test_counts_match_pytorchcv():
    """pytorchcv's named models where it has them, its ShuffleNet class otherwise."""
    pcv = pytest.importorskip("pytorchcv.models.shufflenet")
    named = {f"shufflenet_v1_g{g}": f"shufflenet_g{g}_w1" for g in (1, 2, 3, 4, 8)}
    named["shufflenet_v1_g3_x0_5"] = "shufflenet_g3_wd2"
    for name in NAMES:
        net = getattr(pcv, named[name])() if name in named else _pytorchcv(S.VARIANTS[name])
        want = sum(p.numel() for p in net.parameters())
        assert _count(_template(jaxcnn.create_model(name))) == want, name
        assert jaxcnn.get_model_info(name).params == want, name


def test_table1_widths():
    """Table 1 (1x) and the scaled g = 3 networks (authors' code: 24-channel stem at 1.5x)."""
    assert S.VARIANTS["shufflenet_v1_g3"].widths() == (24, (240, 480, 960))
    assert S.VARIANTS["shufflenet_v1_g8"].widths() == (24, (384, 768, 1536))
    assert S.VARIANTS["shufflenet_v1_g3_x0_5"].widths() == (12, (120, 240, 480))
    assert S.VARIANTS["shufflenet_v1_g3_x1_5"].widths() == (24, (360, 720, 1440))
    assert S.VARIANTS["shufflenet_v1_g3_x2_0"].widths() == (48, (480, 960, 1920))
    # The paper's multiply-adds (Tables 2 and 5: 137M, 38M, 292M, 524M) to within 2%.
    for name, paper in [
        ("shufflenet_v1_g3", 137e6),
        ("shufflenet_v1_g3_x0_5", 38e6),
        ("shufflenet_v1_g3_x1_5", 292e6),
        ("shufflenet_v1_g3_x2_0", 524e6),
    ]:
        assert abs(jaxcnn.get_model_info(name).macs / paper - 1) < 0.02, name


def test_groups_that_do_not_divide_are_refused():
    with pytest.raises(ValueError, match="groups=5 is not in Table 1"):
        jaxcnn.create_model("shufflenet_v1_g3", groups=5).variant.widths()
    with pytest.raises(ValueError, match="do not split into 8 groups"):
        _template(jaxcnn.create_model("shufflenet_v1_g8", width_mult=0.5))


def test_taps_any_channel_count_and_input_check():
    model = jaxcnn.create_model("shufflenet_v1_g3", num_classes=7)
    x = jnp.ones((2, 32, 32, 1))
    variables = _template(model, 32, 1)
    taps = jax.eval_shape(lambda v, x: model.apply(v, x, method=model.features), variables, x)
    assert {k: v.shape for k, v in taps.items()} == {
        "stem": (2, 8, 8, 24),
        "stage2": (2, 4, 4, 240),
        "stage3": (2, 2, 2, 480),
        "stage4": (2, 1, 1, 960),
        "pre_logits": (2, 960),
        "logits": (2, 7),
    }
    p = variables["params"]
    assert p["stem"]["conv"]["kernel"].shape == (3, 3, 1, 24)
    # Stage 2's first 1x1 conv is not grouped (Sec. 3.3); the next ones are (3 groups).
    assert p["stage2_unit1"]["pw1"]["conv"]["kernel"].shape == (1, 1, 24, 60)
    assert p["stage2_unit2"]["pw1"]["conv"]["kernel"].shape == (1, 1, 80, 60)
    # The stride-2 branch makes out - in channels; the average-pooled input fills the rest.
    assert p["stage2_unit1"]["pw2"]["conv"]["kernel"].shape == (1, 1, 20, 216)
    assert p["stage3_unit1"]["pw2"]["conv"]["kernel"].shape == (1, 1, 40, 240)
    with pytest.raises(ValueError, match=r"NHWC"):
        jax.eval_shape(lambda v: model.apply(v, jnp.ones((32, 32)), train=False), variables)
