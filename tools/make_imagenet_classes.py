"""Writes jaxcnn/weights/imagenet_classes.json: the 1000 ImageNet-1k class names, from torchvision.

torchvision (BSD-3-Clause) ships the names of the ILSVRC-2012 classes in the order of its and timm's
ImageNet-1k classifiers (sorted WordNet synset IDs); jaxcnn ships a copy so that `jaxcnn.predict`
names the classes of published weights offline and without PyTorch. Run with the `torch` extra:

    python tools/make_imagenet_classes.py
"""

import json
from pathlib import Path

import torchvision
from torchvision.models._meta import _IMAGENET_CATEGORIES

OUT = Path(__file__).resolve().parents[1] / "jaxcnn" / "weights" / "imagenet_classes.json"


def main() -> None:
    version = torchvision.__version__.split("+")[0]
    obj = {
        "source": (
            f"torchvision {version}, torchvision/models/_meta.py _IMAGENET_CATEGORIES "
            "(BSD-3-Clause, Copyright (c) Soumith Chintala 2016); the ILSVRC-2012 classes in the "
            "usual order (sorted WordNet synset IDs), which torchvision's and timm's ImageNet-1k "
            "weights share"
        ),
        "generator": "tools/make_imagenet_classes.py",
        "names": list(_IMAGENET_CATEGORIES),
    }
    OUT.write_text(json.dumps(obj, indent=0) + "\n")
    print(f"wrote {OUT} ({len(obj['names'])} names)")


if __name__ == "__main__":
    main()
