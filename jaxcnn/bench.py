"""Speed benchmark: `python -m jaxcnn.bench --arch=resnet50 --batch_size=16 --image_size=224`.

Prints compile time, training and inference images/s and peak memory for one architecture on the
local devices (the batch is sharded over all of them, as in training). With the `torch` extra,
`--compare=torchvision` times torchvision's same network in the same process (channels_last, the
same batch and optimizer) and prints the ratio jaxcnn / torchvision. `--profile=DIR` then records a
`jax.profiler` trace of a few train and inference steps into DIR (TensorBoard's layout: view it with
`tensorboard --logdir DIR` and the tensorboard-plugin-profile package, or `xprof --logdir DIR`).
"""

import os
import resource
import time

from absl import flags

from jaxcnn import cli


def define_flags(fv: flags.FlagValues) -> cli.Flags:
    d = cli.definers(fv)
    return cli.Flags(
        arch=d.string("arch", "resnet50", "Architecture name or alias."),
        batch_size=d.integer("batch_size", 16, "Global batch size."),
        image_size=d.integer("image_size", 224, "Input side in pixels."),
        steps=d.integer("steps", 10, "Timed steps (after compilation and 2 warm-up steps)."),
        dtype=d.enum(
            "dtype",
            "float32",
            ["float32", "bfloat16", "float16"],
            "Computation dtype (float16 with dynamic loss scaling, as training runs it).",
        ),
        compare=d.enum("compare", None, ["torchvision"], "Also time this implementation."),
        profile=d.string(
            "profile", None, "Write a jax.profiler trace of 3 train + 3 inference steps here."
        ),
    )


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn, steps: int) -> float:
    """Seconds per call of `fn` over `steps` calls, after 2 warm-up calls."""
    import jax

    for _ in range(2):
        jax.block_until_ready(fn())
    t = time.perf_counter()
    for _ in range(steps):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / steps


def bench_jax(
    arch: str, batch: int, size: int, steps: int, dtype: str, profile: str | None = None
) -> dict[str, float]:
    """Times jaxcnn's train step (SGD + momentum) and inference on random data, with the steps
    training itself runs (`jaxcnn.training.program.build_program`); with `profile`, then traces
    3 more of each into that directory."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import jaxcnn
    from jaxcnn.training import sharding
    from jaxcnn.training.program import build_program

    model = jaxcnn.create_model(arch, num_classes=1000, dtype=jnp.dtype(dtype))
    program = build_program(
        model,
        optax.sgd(0.01, momentum=0.9),
        seed=0,
        input_shape=(1, size, size, 3),
        loss_scale=dtype == "float16",
    )
    sharding.check_batch_size(batch, program.mesh)
    rng = np.random.default_rng(0)
    gb = program.shard(
        {
            "image": rng.standard_normal((batch, size, size, 3), dtype=np.float32),
            "label": rng.integers(0, 1000, batch).astype(np.int32),
            "mask": np.ones((batch,), np.float32),
        }
    )
    state = program.init()
    out = {}
    t = time.perf_counter()
    train = program.train.lower(state, gb).compile()
    out["train_compile_s"] = time.perf_counter() - t
    holder = [state]

    def train_once():
        holder[0], metrics = train(holder[0], gb)  # the state is donated: carry it over
        return metrics

    out["train_img_s"] = batch / _time(train_once, steps)
    t = time.perf_counter()
    infer = program.eval.lower(holder[0], gb).compile()
    out["infer_compile_s"] = time.perf_counter() - t
    out["infer_img_s"] = batch / _time(lambda: infer(holder[0], gb), steps)
    if profile:
        with jax.profiler.trace(profile):
            for _ in range(3):
                jax.block_until_ready(train_once())
            for _ in range(3):
                jax.block_until_ready(infer(holder[0], gb))
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
    import contextlib

    import torch
    import torchvision

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
    from jaxcnn.models import resolve_name

    return resolve_name(arch)


def main(argv: list[str], f: cli.Flags) -> int:
    del argv
    cli.check_positive(f, "batch_size", "image_size", "steps")
    arch = jaxcnn_name(f.arch.value)  # UnknownModelError lists the closest names
    if f.compare.value == "torchvision" and f.dtype.value == "float16":
        return cli.fail(
            "--compare=torchvision times torchvision in float32 or bfloat16 (autocast); "
            "float16 has no counterpart there: use --dtype=float32 or bfloat16"
        )
    if f.compare.value == "torchvision":
        try:
            import torchvision
        except ImportError:
            return cli.fail("--compare=torchvision needs pip install 'jaxcnn[torch]'")
        if not hasattr(torchvision.models, arch):
            return cli.fail(f"torchvision has no {arch} to compare with")
    print(
        f"{arch}, batch {f.batch_size.value}, {f.image_size.value}x{f.image_size.value}, {f.dtype.value}, "
        f"{f.steps.value} timed steps; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    r = bench_jax(
        arch,
        f.batch_size.value,
        f.image_size.value,
        f.steps.value,
        f.dtype.value,
        profile=f.profile.value,
    )
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
    if f.profile.value:
        print(f"profile of 3 train + 3 inference steps in {f.profile.value}")
    if f.compare.value == "torchvision":
        t = bench_torchvision(
            arch, f.batch_size.value, f.image_size.value, f.steps.value, f.dtype.value
        )
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
    cli.run(define_flags, main)
