"""Cost tables of one network or of many: `python -m jaxcnn.summary --arch=vgg16`.

`--arch=NAME` gives one network layer by layer; `--compare=all --plot=chart.png` one row per
network and the lecture's chart.

One network: a row per layer (name, kind, output shape, activations, activation memory, parameters,
MACs), the totals, the memory of a forward pass per image and of a training step (analytic, and
from XLA's memory analysis of the compiled programs), and XLA's FLOP count of the compiled forward
pass beside 2 x MACs, printed as a table, markdown, csv or json. `--compare`: one row per network;
`--plot` writes the two charts as PNGs. The tables come from the traced program
(`jaxcnn.analysis.cost`, `jaxcnn.analysis.tables`).
"""

import json
import sys

from absl import flags

from jaxcnn import cli


def define_flags(fv: flags.FlagValues) -> cli.Flags:
    d = cli.definers(fv)
    return cli.Flags(
        arch=d.string("arch", None, "Architecture name or alias (see --compare=all)."),
        image_size=d.integer("image_size", None, "Input side; default: the network's native one."),
        channels=d.integer("channels", 3, "Input channels."),
        batch_size=d.integer("batch_size", 32, "Batch size of the training-step memory figures."),
        format=d.enum("format", "table", ["table", "markdown", "csv", "json"], "Output."),
        xla=d.bool(
            "xla",
            True,
            "Also compile the forward pass and a training step for XLA's memory and FLOPs.",
        ),
        compare=d.string(
            "compare",
            None,
            "Comma-separated names, or `all`: one row per network instead of per layer.",
        ),
        plot=d.string(
            "plot",
            None,
            "With --compare: write the top-1 vs operations bubble chart to this PNG, and forward "
            "memory vs batch size to <name>_memory.png beside it.",
        ),
    )


def main(argv: list[str], f: cli.Flags) -> int:
    del argv
    import jaxcnn
    from jaxcnn.analysis.tables import (
        compare_rows,
        compare_table,
        fmt_int,
        layer_table,
        memory_report,
        plot,
        render,
    )

    if (f.arch.value is None) == (f.compare.value is None):
        return cli.fail("give exactly one of --arch=NAME or --compare=NAMES|all")
    if f.plot.value and not f.compare.value:
        return cli.fail("--plot needs --compare")
    cli.check_positive(f, "image_size", "batch_size", "channels")
    if f.compare.value:
        spec = f.compare.value.strip()
        names = (
            jaxcnn.list_models()
            if spec == "all"
            else [jaxcnn.get_model_info(n).name for n in spec.split(",") if n.strip()]
        )
        rows = compare_rows(names)
        if f.format.value == "json":  # the raw records, with their field names
            print(json.dumps(rows, indent=1))
        else:
            print(render(*compare_table(rows, f.format.value), f.format.value))
        if f.plot.value:
            for p in plot(rows, f.plot.value):
                print(f"wrote {p}", file=sys.stderr)
        return 0

    info = jaxcnn.get_model_info(f.arch.value)
    size = f.image_size.value or info.resolution
    if size < info.min_image_size:
        return cli.fail(
            f"{info.name} needs inputs of at least {info.min_image_size}x"
            f"{info.min_image_size} (its total stride); got --image_size={size}"
        )
    text, (info, size, model, s) = layer_table(info.name, size, f.channels.value, f.format.value)
    print(text)
    if f.format.value in ("table", "markdown"):
        print(
            f"\n{info.name} at {size}x{size}x{f.channels.value}: {fmt_int(s.params)} parameters, "
            f"{fmt_int(s.macs)} MACs per image (registry reference at {info.resolution}px: "
            f"{fmt_int(info.params)} / {fmt_int(info.macs)})."
        )
        print(memory_report(model, s, size, f.channels.value, f.batch_size.value, f.xla.value))
    return 0


if __name__ == "__main__":
    cli.run(define_flags, main)
