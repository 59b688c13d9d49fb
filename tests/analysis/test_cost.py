"""Cost analysis against the lecture's tables (corrected where they are wrong) and hand counts.

The summary command (tables as CSV / JSON, --compare, plots): tests/cli.
"""

import flax.linen as nn
import pytest

import jaxcnn
from jaxcnn.analysis import cost, xla_cost

# AlexNet 2012 (two-GPU grouping), layer by layer: (output C, H, W), params, MACs. Hand counts, as
# in jaxcnn/reference/lecture_checks.json `alexnet_layers_groups2`; the lecture's CONV1 row is
# 55x55x96 with 34,944 parameters.
ALEXNET_2012 = [
    ("conv", (96, 55, 55), 34_944, 105_415_200),
    ("norm", (96, 55, 55), 0, 0),
    ("pool", (96, 27, 27), 0, 0),
    ("conv", (256, 27, 27), 307_456, 223_948_800),
    ("norm", (256, 27, 27), 0, 0),
    ("pool", (256, 13, 13), 0, 0),
    ("conv", (384, 13, 13), 885_120, 149_520_384),
    ("conv", (384, 13, 13), 663_936, 112_140_288),
    ("conv", (256, 13, 13), 442_624, 74_760_192),
    ("pool", (256, 6, 6), 0, 0),
    ("linear", (4096,), 37_752_832, 37_748_736),
    ("linear", (4096,), 16_781_312, 16_777_216),
    ("linear", (1000,), 4_097_000, 4_096_000),
]


def _chw(shape):
    return (shape[-1], *shape[:-1]) if len(shape) == 3 else shape


def test_alexnet_2012_table():
    rows = cost.layer_costs(jaxcnn.create_model("alexnet_2012"), 227)
    assert rows[0].kind == "input" and rows[0].shape == (227, 227, 3)
    got = [(r.kind, _chw(r.shape), r.params, r.macs) for r in rows[1:]]
    assert got == ALEXNET_2012


def _vgg16_by_hand():
    """VGG-16 (configuration D) at 224: every conv keeps the size, every pool halves it."""
    rows, size, cin = [("input", 224 * 224 * 3, 0)], 224, 3
    for widths in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
        for c in widths:
            rows.append(("conv", size * size * c, 9 * cin * c + c))
            cin = c
        size //= 2
        rows.append(("pool", size * size * cin, 0))
    for fin, fout in ((7 * 7 * 512, 4096), (4096, 4096), (4096, 1000)):
        rows.append(("linear", fout, fin * fout + fout))
    return rows


def test_vgg16_table_and_the_lecture_memory_total():
    """The lecture's VGG-16 table: 138M parameters; its activation total is recomputed here.

    The slide's '24M * 4 bytes ~= 93MB / image' does not add up from its own rows: the rows sum to
    15,237,608 values (input + conv + pool + fc outputs), 61 MB in float32 (see README)."""
    s = cost.summarize(jaxcnn.create_model("vgg16"), 224)
    assert [(r.kind, r.activations, r.params) for r in s.rows] == _vgg16_by_hand()
    assert s.params == 138_357_544
    assert s.activations == 15_237_608
    assert s.activation_bytes() == 60_950_432


def test_inception_module_lecture_example():
    """28x28x256 input, branches 1x1:128, 3x3:192, 5x5:96 (the lecture's example)."""
    naive = cost.inception_module_ops(28, 28, 256, {"1x1": 128, "3x3": 192, "5x5": 96})
    assert naive["total"] == 854_196_224  # the lecture's 854M ops
    assert naive["out_channels"] == 672 and naive["params"] == 1_089_536
    assert naive["terms"]["5x5 conv, 96"] == 28 * 28 * 5 * 5 * 256 * 96
    bottleneck = cost.inception_module_ops(
        28, 28, 256, {"1x1": 128, "3x3": 192, "5x5": 96}, reduce={"3x3": 64, "5x5": 64, "pool": 64}
    )
    # The lecture prints 358M: that figure makes the 3x3 conv read 128 channels instead of the 64 its
    # own 1x1 reduction produces (28*28*3*3*128*192 - 28*28*3*3*64*192 = 86,704,128 too many).
    assert bottleneck["total"] == 271_351_808
    assert bottleneck["out_channels"] == 480 and bottleneck["params"] == 346_112


class _Stack(nn.Module):
    """`kernels` bias-free same-padded convs of `width` channels."""

    kernels: tuple[int, ...]
    width: int = 8

    @nn.compact
    def __call__(self, x, *, train):
        for i, k in enumerate(self.kernels):
            x = nn.Conv(self.width, (k, k), padding="SAME", use_bias=False, name=f"c{i}")(x)
        return x.mean(axis=(1, 2))


@pytest.mark.parametrize("c", [8, 64])
def test_three_3x3_see_as_far_as_one_7x7(c):
    assert cost.receptive_field_of_layers([(3, 1)] * 3) == 7
    three, one = _Stack((3, 3, 3), c), _Stack((7,), c)
    assert cost.receptive_field(three, 16, channels=c)["receptive_field"] == 7
    assert cost.receptive_field(one, 16, channels=c)["receptive_field"] == 7
    assert cost.summarize(three, 16, channels=c).params == 27 * c * c
    assert cost.summarize(one, 16, channels=c).params == 49 * c * c


def test_receptive_field_of_vgg16_and_resnet8():
    # VGG-16's pool5: 13 3x3 convs and 5 2x2/2 pools, by the stacking formula.
    layers = []
    for n in (2, 2, 3, 3, 3):
        layers += [(3, 1)] * n + [(2, 2)]
    assert cost.receptive_field_of_layers(layers) == 212
    assert cost.receptive_field(jaxcnn.create_model("vgg16"), 224) == {
        "receptive_field": 212,
        "jump": 32,
        "feature_shape": (7, 7, 512),
    }
    # ResNet-8: the deepest path is 7 3x3 convs, the option-A shortcut subsamples by slicing.
    rf = cost.receptive_field(jaxcnn.create_model("resnet8"), 32)
    assert rf["jump"] == 4
    assert rf["receptive_field"] == cost.receptive_field_of_layers(
        [(3, 1), (3, 1), (3, 1), (3, 2), (3, 1), (3, 2), (3, 1)]
    )


class _ValidNet(nn.Module):
    """Unpadded, bias-free convs and a linear layer: nothing but multiply-adds."""

    @nn.compact
    def __call__(self, x, *, train):
        x = nn.Conv(8, (3, 3), padding="VALID", use_bias=False)(x)
        x = nn.Conv(16, (5, 5), strides=2, padding="VALID", use_bias=False)(x)
        x = nn.Conv(16, (3, 3), padding="VALID", feature_group_count=4, use_bias=False)(x)
        return nn.Dense(10, use_bias=False)(x.reshape(x.shape[0], -1))


def test_macs_cross_checked_with_xla():
    """XLA's cost analysis of the compiled forward pass counts 2 FLOPs per multiply-add, but only
    for kernel taps that land on real pixels (not on padding), plus element-wise work."""
    model = _ValidNet()
    macs = cost.summarize(model, 20).macs
    # By hand: 18x18x8 outputs x 27 taps, 7x7x16 x 200, 5x5x16 x 36 (4 groups of 4 channels), 400x10.
    assert macs == 18 * 18 * 8 * 27 + 7 * 7 * 16 * 200 + 5 * 5 * 16 * 36 + 400 * 10
    assert xla_cost.xla_forward_cost(model, 20)["flops"] == 2 * macs
    # With 'same' padding a 3x3 conv at 32x32 touches (3 * 32 - 2)^2 / (32^2 * 9) = 96% real pixels,
    # less at 2x2 feature maps; BN, ReLU and pooling add a little.
    vgg = jaxcnn.create_model("vgg11", num_classes=10)
    ratio = xla_cost.xla_forward_cost(vgg, 32)["flops"] / (2 * cost.summarize(vgg, 32).macs)
    assert 0.8 < ratio < 1.0
