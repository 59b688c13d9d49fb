"""Rebuilds `jaxcnn/weights/zoo.json` from the metadata of the installed torchvision and timm.

Needs the torch extra (`pip install -e .[torch]`: torch, torchvision, timm); reading zoo.json does
not. Nothing is downloaded: torchvision's weights enums (`get_model_weights(name)`: `.url`,
`.meta`, `.transforms()`) and timm's pretrained configs (`get_pretrained_cfg(name)` and timm's own
eval transform for it) ship with the packages.

The entries:
- `torchvision:NAME.WEIGHTS` for every ImageNet-1k classifier weights of a torchvision
  classification builder whose architecture jaxcnn has (`jaxcnn.list_models()`), and
  `torchvision:NAME` for the builder's DEFAULT weights;
- `timm:NAME` (timm's default pretrained tag) for `TIMM_MODELS`, the architectures that torchvision
  publishes no weights for and whose timm weights jaxcnn converts.

The records are `jaxcnn.weights.zoo.ZooEntry`s, and importing that module reads the current
zoo.json: a new `ZooEntry` field needs a default until zoo.json has been regenerated with it.

Usage, from the repository root:

    python tools/make_zoo.py          # rewrites jaxcnn/weights/zoo.json
    python tools/make_zoo.py --check  # exit status 1 if zoo.json differs from what it would write
"""

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

import timm
import timm.data
import torch.hub
import torchvision
from timm.models import get_pretrained_cfg
from torchvision import transforms

import jaxcnn
from jaxcnn.weights.zoo import ZooEntry

ZOO_JSON = Path(__file__).resolve().parents[1] / "jaxcnn" / "weights" / "zoo.json"

# torchvision builder -> jaxcnn architecture, where the names differ (jaxcnn's `googlenet` is the
# paper's network; torchvision's layout is `googlenet_tv`).
TORCHVISION_ARCH = {"googlenet": "googlenet_tv"}
# Builders whose weights torchvision loads with a non-default constructor argument.
TORCHVISION_NOTES = {
    "googlenet": "torchvision loads these weights with transform_input=True",
    "inception_v3": "torchvision loads these weights with transform_input=True",
}
# timm models whose default pretrained weights the zoo lists. Not listed although timm has weights:
# resnetv2_18 / resnetv2_34 (ra4_e3600_r224_in1k) and senet154.gluon_in1k (another layout).
TIMM_MODELS = (
    "inception_resnet_v2",
    "inception_v4",
    "legacy_senet154",
    "legacy_seresnet101",
    "legacy_seresnet152",
    "legacy_seresnet50",
    "legacy_seresnext101_32x4d",
    "legacy_seresnext50_32x4d",
    "mobilenetv1_100",
    "nasnetalarge",
    "pnasnet5large",
    "resnetv2_101",
    "resnetv2_50",
)
# timm model -> jaxcnn architecture, where `jaxcnn.get_model_info` does not resolve the timm name.
TIMM_ARCH = {"mobilenetv1_100": "mobilenet_v1"}
# What timm's GitHub release tags hold, where its pretrained cfgs say nothing (no hf_hub_id,
# origin_url or paper_ids). v0.1-cadene: the files of Cadene's pretrained-models.pytorch
# (data.lip6.fr/cadene/pretrainedmodels), re-hosted unchanged: same names and hash prefixes.
# v0.1-weights (legacy_senet154, legacy_seresnext*): not Cadene's files (other hashes than his
# senet154-c7b49a05, se_resnext50_32x4d-a260b3a4, se_resnext101_32x4d-3b2fe3d8); timm records
# nothing of their origin, so the source names only the release.
TIMM_RELEASES = {"v0.1-cadene": "Cadene's pretrainedmodels file, re-hosted unchanged"}
HF_NOTE = "no published checksum: sha256 recorded at first download"


def _sha256_prefix(url: str) -> str | None:
    """The hash prefix in a file name (`name-<hex>.pth`), as torch.hub's `check_hash` reads it."""
    match = torch.hub.HASH_REGEX.search(url.rsplit("/", 1)[-1])
    return match.group(1) if match and match.group(1) else None


def _arch(name: str, overrides: dict[str, str]) -> str:
    arch = jaxcnn.get_model_info(overrides.get(name, name)).name
    if arch not in jaxcnn.list_models():
        raise ValueError(f"{name}: {arch} is not a registered jaxcnn model")
    return arch


def _torchvision_entry(name: str, weights: Any) -> ZooEntry:
    tf = weights.transforms()
    (crop,), (resize,) = tf.crop_size, tf.resize_size
    metrics = weights.meta["_metrics"]["ImageNet-1K"]
    if len(weights.meta["categories"]) != 1000:
        raise ValueError(f"{weights}: not a 1000-class ImageNet head")
    return ZooEntry(
        arch=_arch(name, TORCHVISION_ARCH),
        url=weights.url,
        sha256_prefix=_sha256_prefix(weights.url),
        input_size=crop,
        resize_size=resize,
        interpolation=tf.interpolation.value,
        mean=tuple(tf.mean),
        std=tuple(tf.std),
        top1=metrics["acc@1"],
        top5=metrics["acc@5"],
        labels="imagenet1k",
        source=f"torchvision {name} {type(weights).__name__}.{weights.name}",
        notes=TORCHVISION_NOTES.get(name, ""),
    )


def torchvision_entries() -> dict[str, ZooEntry]:
    """`torchvision:NAME[.WEIGHTS]` entries of every builder whose architecture jaxcnn has."""
    names = set(jaxcnn.list_models())
    out = {}
    for name in torchvision.models.list_models(module=torchvision.models):
        if TORCHVISION_ARCH.get(name, name) not in names:
            continue
        enum = torchvision.models.get_model_weights(name)
        for weights in enum:  # members only: DEFAULT is an alias
            # IMAGENET1K_FEATURES (vgg16): a backbone without a classifier, categories None.
            if weights.name.startswith("IMAGENET1K_") and weights.meta["categories"]:
                out[f"torchvision:{name}.{weights.name}"] = _torchvision_entry(name, weights)
        out[f"torchvision:{name}"] = _torchvision_entry(name, enum.DEFAULT)
    return out


def _timm_source(cfg: Any) -> str:
    source = f"timm {cfg.hf_hub_id}" if cfg.hf_hub_id else f"timm {cfg.architecture}.{cfg.tag}"
    release = re.match(
        r"https://github\.com/([^/]+/[^/]+)/releases/download/([^/]+)/", cfg.url or ""
    )
    if not cfg.hf_hub_id and release:
        repo, tag = release.groups()
        source += f", GitHub release {repo} {tag}"
        if tag in TIMM_RELEASES:
            source += f" ({TIMM_RELEASES[tag]})"
    if cfg.origin_url:
        source += f", origin {cfg.origin_url}"
    if cfg.paper_ids:
        source += f", paper {cfg.paper_ids}"
    return source


def timm_entries() -> dict[str, ZooEntry]:
    """`timm:NAME` entries of `TIMM_MODELS` (timm's default pretrained tag of each)."""
    out = {}
    for name in TIMM_MODELS:
        cfg = get_pretrained_cfg(name)
        if cfg is None or cfg.num_classes != 1000:
            raise ValueError(f"timm {name}: no 1000-class pretrained config")
        data = timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict())
        tf = timm.data.create_transform(**data)  # timm's eval transform: resize, centre crop
        (resize,) = [t.size for t in tf.transforms if isinstance(t, transforms.Resize)]
        (crop,) = [t.size for t in tf.transforms if isinstance(t, transforms.CenterCrop)]
        resize = resize if isinstance(resize, int) else resize[0]
        url = (
            f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors"
            if cfg.hf_hub_id
            else cfg.url
        )
        out[f"timm:{name}"] = ZooEntry(
            arch=_arch(name, TIMM_ARCH),
            url=url,
            sha256_prefix=None if cfg.hf_hub_id else _sha256_prefix(url),
            input_size=crop[0],
            resize_size=resize,
            interpolation=data["interpolation"],
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            top1=None,  # timm's pretrained configs hold no accuracy (its results CSVs do)
            top5=None,
            labels="imagenet1k",
            source=_timm_source(cfg),
            notes=HF_NOTE if cfg.hf_hub_id else "",
        )
    return out


def versions() -> dict[str, str]:
    """The torchvision and timm versions the entries come from (local build tags dropped)."""
    return {
        "timm": timm.__version__.split("+")[0],
        "torchvision": torchvision.__version__.split("+")[0],
    }


def build() -> dict[str, ZooEntry]:
    """Every zoo entry, by key, sorted.

    Raises:
        ValueError: an architecture jaxcnn lacks, or timm and torchvision both supplying one.
    """
    tv, tm = torchvision_entries(), timm_entries()
    both = {e.arch for e in tv.values()} & {e.arch for e in tm.values()}
    if both:
        raise ValueError(f"timm entries for architectures torchvision publishes: {sorted(both)}")
    return dict(sorted({**tv, **tm}.items()))


def render(entries: dict[str, ZooEntry], sources: dict[str, str]) -> str:
    """The text of zoo.json: sorted keys, one field per line, lists on one line."""
    lines = [
        "{",
        '  "generator": "tools/make_zoo.py",',
        f'  "sources": {json.dumps(sources, sort_keys=True)},',
        '  "entries": {',
    ]
    for i, (key, entry) in enumerate(sorted(entries.items())):
        fields = [
            f"      {json.dumps(k)}: {json.dumps(v)}" for k, v in dataclasses.asdict(entry).items()
        ]
        comma = "," if i < len(entries) - 1 else ""
        lines += [f"    {json.dumps(key)}: {{", ",\n".join(fields), f"    }}{comma}"]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Writes zoo.json (or, with --check, compares it); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--output", type=Path, default=ZOO_JSON, help="default: %(default)s")
    args = parser.parse_args(argv)
    text = render(build(), versions())
    if args.check:
        same = args.output.exists() and args.output.read_text("utf-8") == text
        print(f"{args.output}: {'up to date' if same else 'differs; run tools/make_zoo.py'}")
        return 0 if same else 1
    args.output.write_text(text, "utf-8")
    print(f"wrote {args.output} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
