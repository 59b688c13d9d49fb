"""Speed benchmark: `python -m jaxcnn.bench --arch=resnet50 --batch_size=16 --image_size=224`.

Prints compile time, training and inference images/s and peak memory for one architecture on the
local devices (the batch is sharded over all of them, as in training). With the `torch` extra,
`--compare=torchvision` times torchvision's same network in the same process (channels_last, the
same batch and optimizer) and prints the ratio jaxcnn / torchvision.
"""

import functools
import os
import resource
import sys
import time

from absl import app, flags

from jaxcnn import runtime

_ARCH = flags.DEFINE_string("arch", "resnet50", "Architecture name or alias.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Global batch size.")
_SIZE = flags.DEFINE_integer("image_size", 224, "Input side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after compilation and 2 warm-up steps).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Computation dtype.")
_COMPARE = flags.DEFINE_enum("compare", None, ["torchvision"], "Also time this implementation.")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_jax(arch: str, batch: int, size: int, steps: int, dtype: str) -> dict[str, float]:
    """Times jaxcnn's train step (SGD + momentum) and inference on random data."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import optax  # noqa: PLC0415

    import jaxcnn  # noqa: PLC0415
    from jaxcnn.training import sharding  # noqa: PLC0415
    from jaxcnn.training.steps import eval_step, init_train_state, train_step  # noqa: PLC0415

    mesh = sharding.make_mesh()
    sharding.check_batch_size(batch, mesh)
    model = jaxcnn.create_model(arch, num_classes=1000, dtype=jnp.dtype(dtype))
    tx = optax.sgd(0.01, momentum=0.9)
    rep, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    init = functools.partial(init_train_state, model, tx, 0, (1, size, size, 3))
    state = jax.jit(init, out_shardings=rep)()
    rng = np.random.default_rng(0)
    local = {
        "image": rng.standard_normal((batch, size, size, 3), dtype=np.float32),
        "label": rng.integers(0, 1000, batch).astype(np.int32),
        "mask": np.ones((batch,), np.float32),
    }
    gb = sharding.global_batch(local, mesh)
    out = {}

    step = jax.jit(
        train_step, in_shardings=(rep, split), out_shardings=(rep, rep), donate_argnums=0
    )
    t = time.perf_counter()
    compiled = step.lower(state, gb).compile()
    out["train_compile_s"] = time.perf_counter() - t
    for _ in range(2):
        state, m = compiled(state, gb)
    jax.block_until_ready(m)
    t = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, gb)
    jax.block_until_ready(m)
    out["train_img_s"] = steps * batch / (time.perf_counter() - t)

    infer = jax.jit(eval_step, in_shardings=(rep, split), out_shardings=rep)
    t = time.perf_counter()
    compiled = infer.lower(state, gb).compile()
    out["infer_compile_s"] = time.perf_counter() - t
    for _ in range(2):
        r = compiled(state, gb)
    jax.block_until_ready(r)
    t = time.perf_counter()
    for _ in range(steps):
        r = compiled(state, gb)
    jax.block_until_ready(r)
    out["infer_img_s"] = steps * batch / (time.perf_counter() - t)
    out["peak_rss_mib"] = _peak_rss_mib()
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_mib"] = stats["peak_bytes_in_use"] / 2**20
    out["devices"] = f"{len(jax.devices())} x {jax.devices()[0].device_kind}"
    return out


def bench_torchvision(
    arch: str, batch: int, size: int, steps: int, dtype: str = "float32"
) -> dict[str, float]:
    """Times torchvision's same network: channels_last, SGD + momentum, on the CPU or CUDA.

    `dtype="bfloat16"` runs under `torch.autocast` (fp32 parameters, bf16 compute), the
    counterpart of jaxcnn's `dtype=bfloat16` with float32 parameters.
    """
    import contextlib  # noqa: PLC0415

    import torch  # noqa: PLC0415
    import torchvision  # noqa: PLC0415

    name = jaxcnn_name(arch)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(os.cpu_count() or 1)
    model = getattr(torchvision.models, name)(weights=None).to(
        dev, memory_format=torch.channels_last
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    autocast = (
        (lambda: torch.autocast(dev, dtype=torch.bfloat16))
        if dtype == "bfloat16"
        else contextlib.nullcontext
    )

    def train():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()

    out = {}
    model.train()
    for _ in range(2):
        train()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        train()
    sync()
    out["train_img_s"] = steps * batch / (time.perf_counter() - t)
    model.eval()
    with torch.inference_mode(), autocast():
        for _ in range(2):
            model(x)
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync()
    out["infer_img_s"] = steps * batch / (time.perf_counter() - t)
    out["device"] = (
        torch.cuda.get_device_name() if dev == "cuda" else f"{dev}, torch {torch.__version__}"
    )
    return out


def jaxcnn_name(arch: str) -> str:
    from jaxcnn.models import resolve_name  # noqa: PLC0415

    return resolve_name(arch)


def main(argv: list[str]) -> int:
    del argv
    runtime.configure_xla_cpu()
    try:
        arch = jaxcnn_name(_ARCH.value)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if _COMPARE.value == "torchvision":
        try:
            import torchvision  # noqa: PLC0415
        except ImportError:
            print("error: --compare=torchvision needs pip install 'jaxcnn[torch]'", file=sys.stderr)
            return 2
        if not hasattr(torchvision.models, arch):
            print(f"error: torchvision has no {arch} to compare with", file=sys.stderr)
            return 2
    if _BATCH.value <= 0 or _SIZE.value <= 0 or _STEPS.value <= 0:
        print("error: --batch_size, --image_size and --steps must be positive", file=sys.stderr)
        return 2
    print(
        f"{arch}, batch {_BATCH.value}, {_SIZE.value}x{_SIZE.value}, {_DTYPE.value}, "
        f"{_STEPS.value} timed steps; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    r = bench_jax(arch, _BATCH.value, _SIZE.value, _STEPS.value, _DTYPE.value)
    print(
        f"jaxcnn on {r['devices']}: compile train {r['train_compile_s']:.1f} s, "
        f"infer {r['infer_compile_s']:.1f} s"
    )
    print(
        f"jaxcnn      train {r['train_img_s']:8.1f} img/s   inference {r['infer_img_s']:8.1f} img/s"
    )
    mem = f"peak host RSS {r['peak_rss_mib']:.0f} MiB"
    if "device_peak_mib" in r:
        mem += f", device peak {r['device_peak_mib']:.0f} MiB"
    print(mem)
    if _COMPARE.value == "torchvision":
        t = bench_torchvision(arch, _BATCH.value, _SIZE.value, _STEPS.value, _DTYPE.value)
        print(
            f"torchvision train {t['train_img_s']:8.1f} img/s   inference {t['infer_img_s']:8.1f} img/s"
            f"   ({t['device']})"
        )
        print(
            f"ratio jaxcnn/torchvision: train {r['train_img_s'] / t['train_img_s']:.2f}x, "
            f"inference {r['infer_img_s'] / t['infer_img_s']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
