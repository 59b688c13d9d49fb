"""Pictures of a network's weights: `python -m jaxcnn.visualize filters --workdir=runs/x`.

`filters`: the kernels of the first convolution the network applies, as a grid of small images
(the lecture's picture of AlexNet's 64 first-layer 11x11 RGB filters), each min-max normalised and
upscaled. Weights come from a run directory (`--workdir`, latest or `--checkpoint=best`) or from a
fresh random initialisation of a registered architecture (`--arch=alexnet --seed=0`). Writes a PNG
to `--output` (default `WORKDIR/filters.png`, or `filters_<arch>.png` for `--arch`), atomically.
The library behind it is `jaxcnn.analysis.pictures`.
"""

import math
from typing import Any

from absl import flags

from jaxcnn import cli

# The library's names, importable from here as in jaxcnn 0.1.
from jaxcnn.analysis.pictures import (  # noqa: F401
    BACKGROUND,
    GAP,
    MIN_FILTER_SIDE,
    filter_grid,
    filter_images,
    filter_scale,
    first_conv_kernel,
    grid_columns,
    save_png,
    tile_grid,
    with_border,
)

COMMANDS = ("filters",)
POSITIONAL = True  # the picture to draw: one of COMMANDS


def define_flags(fv: flags.FlagValues) -> cli.Flags:
    d = cli.definers(fv)
    run = cli.define_run_flags(fv, batch_size=False)
    return cli.Flags(
        **run,
        arch=d.string("arch", None, "Instead of --workdir: an architecture, randomly initialised."),
        seed=d.integer("seed", 0, "With --arch: the initialisation seed."),
        channels=d.integer("channels", 3, "With --arch: input channels."),
        image_size=d.integer(
            "image_size", None, "With --arch: input side of the trace (default: the native one)."
        ),
        scale=d.integer(
            "scale", None, f"Upscaling of each kernel (default: to >= {MIN_FILTER_SIDE} px)."
        ),
        output=d.string(
            "output", None, "The PNG to write; default WORKDIR/filters.png or filters_<arch>.png."
        ),
    )


def _load_weights(f: cli.Flags) -> tuple[str, Any, dict, int, int, str]:
    """(description, model, variables, image_size, channels, default output) of the flags."""
    if f.workdir.value:
        from jaxcnn import rundir
        from jaxcnn.analysis.features import load_run

        run = load_run(
            f.workdir.value,
            f.checkpoint.value,
            data_dir=f.data_dir.value,
            weights=f.weights.value,
        )
        return (
            f"{run.arch} of {f.workdir.value} at step {run.step} ({run.checkpoint})",
            run.model,
            run.variables,
            run.image_size,
            run.channels,
            str(rundir.as_path(f.workdir.value) / "filters.png"),
        )
    import jax
    import jax.numpy as jnp

    from jaxcnn.models import create_model, get_model_info

    info = get_model_info(f.arch.value)
    size = f.image_size.value or info.resolution
    if size < info.min_image_size:
        raise cli.UsageError(f"{info.name} needs --image_size of at least {info.min_image_size}")
    model = create_model(info.name)
    x = jnp.zeros((1, size, size, f.channels.value), jnp.float32)
    # Under jit only the parameter initialisers run: the forward pass's output is not returned.
    variables = jax.jit(lambda: model.init(jax.random.key(f.seed.value), x, train=False))()
    return (
        f"{info.name}, random init (seed {f.seed.value})",
        model,
        variables,
        size,
        f.channels.value,
        f"filters_{info.name}.png",
    )


def main(argv: list[str], f: cli.Flags) -> int:
    command = argv[1:]
    if len(command) != 1 or command[0] not in COMMANDS:
        got = " ".join(command) or "nothing"
        raise cli.UsageError(f"expected one command, {' or '.join(COMMANDS)}; got {got}")
    if bool(f.workdir.value) == bool(f.arch.value):
        raise cli.UsageError("give exactly one of --workdir=RUN or --arch=NAME")
    if f.arch.value and f.weights.value != "raw":
        raise cli.UsageError(f"--weights={f.weights.value} reads a trained run: give --workdir")
    cli.check_positive(f, "channels", "scale", "image_size")
    if f.workdir.value:
        cli.require_run(f.workdir.value)  # before JAX and TensorFlow start
    what, model, variables, size, channels, default = _load_weights(f)
    path, kernel = first_conv_kernel(model, variables, size, channels)
    picture = filter_grid(kernel, f.scale.value)
    output = f.output.value or default
    save_png(output, picture)
    o, i, kh, kw = kernel.shape
    cols = grid_columns(o)
    print(
        f"wrote {output}: the {o} first-layer filters ({o}x{i}x{kh}x{kw}, {path}) of {what}, "
        f"{math.ceil(o / cols)}x{cols} grid, {picture.shape[1]}x{picture.shape[0]} px"
    )
    return 0


if __name__ == "__main__":
    cli.run(define_flags, main, positional=True)
