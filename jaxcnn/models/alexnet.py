"""AlexNet (torchvision's and the 2012 paper's) and ZFNet.

Papers:
- Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional Neural
  Networks" (Fig. 2, Sec. 3): 227x227 input (the paper says 224; 227 is what the arithmetic needs),
  96-256-384-384-256 convolutions, local response normalisation after conv1 and conv2, overlapping
  3x3/2 max pooling, the two-GPU split as grouped convolutions (conv2, conv4, conv5 see only their own
  GPU's half: `groups=2`), dropout 0.5 in fc6 / fc7.
- torchvision's `alexnet` follows Krizhevsky 2014 ("One weird trick", arXiv 1404.5997):
  64-192-384-256-256, no LRN, no groups.
- Zeiler & Fergus 2013, "Visualizing and Understanding Convolutional Networks" (Fig. 3, Table 2):
  7x7/2 first layer, 5x5/2 second; model (a) 384-384-256 and the lecture's wider 512-1024-512
  (Table 2 row (b)).

All variants put an adaptive average pool to 6x6 before fc6 (torchvision's choice; an identity at the
native resolution) so that smaller images fit. Parameter tree: `conv1`..`conv5`, `fc6`, `fc7`, `head`.
"""

import dataclasses

import flax.linen as nn
import jax

from jaxcnn.layers import torch_dense
from jaxcnn.layers.lrn import LocalResponseNorm
from jaxcnn.layers.pooling import adaptive_avg_pool, flatten_nchw, max_pool, pool_out_size
from jaxcnn.models.base import Classifier, ModelSpec


@dataclasses.dataclass(frozen=True)
class AlexNetVariant:
    """One AlexNet-style network: five convolutions (each with its geometry), three max pools.

    Attributes:
        widths / kernels / strides / paddings / groups: per convolution, conv1..conv5.
        lrn: local response normalisation after conv1 and conv2 (after the ReLU, before pooling).
        ceil_pool: max pools round their output size up (Caffe / ZFNet geometry: 110 -> 55).
        dropout_first: dropout on fc6's input and fc7's input (torchvision) instead of on fc6's and
            fc7's outputs (the paper). Equivalent in eval mode.
        fc: hidden fully connected widths.
        dropout: dropout rate.
        num_classes: classes of the native head.
    """

    widths: tuple[int, ...]
    kernels: tuple[int, ...] = (11, 5, 3, 3, 3)
    strides: tuple[int, ...] = (4, 1, 1, 1, 1)
    paddings: tuple[int, ...] = (2, 2, 1, 1, 1)
    groups: tuple[int, ...] = (1, 1, 1, 1, 1)
    lrn: bool = False
    ceil_pool: bool = False
    dropout_first: bool = False
    fc: tuple[int, int] = (4096, 4096)
    dropout: float = 0.5
    num_classes: int = 1000


_ZFNET = AlexNetVariant(
    (96, 256, 384, 384, 256),
    kernels=(7, 5, 3, 3, 3),
    strides=(2, 2, 1, 1, 1),
    paddings=(1, 0, 1, 1, 1),
    lrn=True,
    ceil_pool=True,
)
VARIANTS: dict[str, AlexNetVariant] = {
    "alexnet": AlexNetVariant((64, 192, 384, 256, 256), dropout_first=True),
    "alexnet_2012": AlexNetVariant(
        (96, 256, 384, 384, 256), paddings=(0, 2, 1, 1, 1), groups=(1, 2, 1, 2, 2), lrn=True
    ),
    "zfnet": _ZFNET,
    # Table 2 row (b): wider conv3-conv5, the same geometry.
    "zfnet_b": dataclasses.replace(_ZFNET, widths=(96, 256, 512, 1024, 512)),
}


class AlexNet(Classifier):
    """AlexNet / ZFNet, NHWC (`variant`: `VARIANTS`).

    Taps of `features`: `conv1`..`conv5`, each after its ReLU and, where the layer has them, LRN and
    max pooling (at the native size conv1 is (N, 27, 27, 96) for alexnet_2012, (N, 55, 55, 96) for
    zfnet, and conv5 (N, 6, 6, 256)); `pre_logits` (N, 4096), fc7's output after ReLU (the features
    of the lecture's nearest-neighbour figure); `logits`.
    """

    @nn.compact
    def _forward(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
        v, kw = self.variant, self._kw
        taps = {}
        for i in range(5):
            k, p = v.kernels[i], v.paddings[i]
            x = nn.Conv(
                v.widths[i],
                (k, k),
                strides=v.strides[i],
                padding=((p, p), (p, p)),
                feature_group_count=v.groups[i],
                name=f"conv{i + 1}",
                **kw,
            )(x)
            x = nn.relu(x)
            if i < 2 and v.lrn:
                x = LocalResponseNorm()(x)
            if i in (0, 1, 4):
                # 3x3/2; ceil mode rounds the output size up (Caffe / ZFNet geometry).
                x = max_pool(x, 3, 2, ceil=v.ceil_pool)
            taps[f"conv{i + 1}"] = x
        x = flatten_nchw(adaptive_avg_pool(x, 6))
        drop = nn.Dropout(v.dropout, deterministic=not train)
        if v.dropout_first:
            x = drop(x)
        x = nn.relu(torch_dense(v.fc[0], x.shape[-1], "fc6", **kw)(x))
        x = drop(x)
        x = nn.relu(torch_dense(v.fc[1], v.fc[0], "fc7", **kw)(x))
        taps["pre_logits"] = x
        if not v.dropout_first:
            x = drop(x)
        taps["logits"] = torch_dense(self.num_classes, v.fc[1], "head", **kw)(x)
        return taps


def _min_size(v: AlexNetVariant) -> int:
    """Smallest square input whose three max pools still see a 3x3 window."""
    for size in range(8, 512):
        s = size
        ok = True
        for i in range(5):
            s = (s + 2 * v.paddings[i] - v.kernels[i]) // v.strides[i] + 1
            if s < 1:
                ok = False
                break
            if i in (0, 1, 4):
                if s < 3:
                    ok = False
                    break
                s = pool_out_size(s, 3, 2, ceil=v.ceil_pool)
        if ok:
            return size
    raise ValueError(v)


_ZF = "Zeiler & Fergus 2013, Visualizing and Understanding Convolutional Networks, Fig. 3, Table 2"
# (name, paper, notes, reference key)
_ROWS = (
    (
        "alexnet",
        "Krizhevsky 2014, One weird trick for parallelizing CNNs (arXiv 1404.5997)",
        "torchvision's single-tower 64-192-384-256-256 variant, no LRN",
        "alexnet_tv",
    ),
    (
        "alexnet_2012",
        "Krizhevsky et al. 2012, ImageNet Classification with Deep CNNs, Sec. 3 and Fig. 2",
        "227x227 input; LRN with the paper's k=2 (Caffe's bvlc_alexnet uses k=1); "
        "create_model('alexnet_2012', groups=(1,)*5) is the lecture's single-tower shapes "
        "(62,378,344 params)",
        "alexnet_caffe",
    ),
    ("zfnet", _ZF + " (model a)", "LRN for the paper's contrast normalisation", "zfnet"),
    ("zfnet_b", _ZF + " (b), the lecture's 512-1024-512", "", "zfnet_b"),
)
MODELS = tuple(
    ModelSpec(
        name,
        "alexnet",
        AlexNet,
        VARIANTS[name],
        227 if name == "alexnet_2012" else 224,
        _min_size(VARIANTS[name]),
        paper,
        notes,
        key,
    )
    for name, paper, notes, key in _ROWS
)
