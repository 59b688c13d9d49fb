"""Cost tables: `python -m jaxcnn.summary --arch=vgg16` (one network, layer by layer) and
`python -m jaxcnn.summary --compare=all --plot=chart.png` (every network, the lecture's chart).

One network: a row per layer (name, kind, output shape, activations, activation memory, parameters,
MACs), the totals, the memory of a forward pass per image and of a training step (analytic, and
from XLA's memory analysis of the compiled programs), and XLA's FLOP count of the compiled forward
pass beside 2 x MACs. The tables come from the traced program (see `jaxcnn/cost.py`).
"""

import csv
import io
import json
import math
import sys
from typing import Any

from absl import app, flags

from jaxcnn import runtime

_ARCH = flags.DEFINE_string("arch", None, "Architecture name or alias (see --compare=all).")
_SIZE = flags.DEFINE_integer("image_size", None, "Input side; default: the network's native one.")
_CHANNELS = flags.DEFINE_integer("channels", 3, "Input channels.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size of the training-step memory figures.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "markdown", "csv", "json"], "Output.")
_XLA = flags.DEFINE_bool(
    "xla", True, "Also compile the forward pass and a training step for XLA's memory and FLOPs."
)
_COMPARE = flags.DEFINE_string(
    "compare", None, "Comma-separated names, or `all`: one row per network instead of per layer."
)
_PLOT = flags.DEFINE_string(
    "plot",
    None,
    "With --compare: write the top-1 vs operations bubble chart to this PNG, and forward memory vs "
    "batch size to <name>_memory.png beside it.",
)

MIB = 2**20


def _fmt_int(n: float) -> str:
    return f"{int(n):,}"


def _fmt_bytes(n: float) -> str:
    return f"{n / MIB:,.2f} MiB" if n >= MIB / 10 else f"{n / 1024:,.1f} KiB"


def render(columns: list[str], rows: list[list[Any]], fmt: str) -> str:
    """Renders rows as an aligned text table, markdown, csv or json."""
    if fmt == "json":
        return json.dumps([dict(zip(columns, r, strict=True)) for r in rows], indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows(rows)
        return buf.getvalue()
    text = [[str(c) for c in r] for r in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in text])
    widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(columns)]
    line = lambda r: "  ".join(  # noqa: E731
        v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
    )
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in text])


def layer_table(arch: str, image_size: int | None, channels: int, fmt: str) -> tuple[str, Any]:
    """The per-layer table of one network and its summary."""
    import jaxcnn  # noqa: PLC0415
    from jaxcnn.analysis import cost  # noqa: PLC0415

    info = jaxcnn.get_model_info(arch)
    size = image_size or info.resolution
    model = jaxcnn.create_model(info.name)
    s = cost.summarize(model, size, channels)
    machine = fmt in ("csv", "json")
    columns = ["layer", "kind", "output", "activations", "memory", "params", "MACs"]
    rows = []
    for r in s.rows:
        shape = "x".join(map(str, r.shape))
        mem = r.activations * 4
        if machine:
            rows.append([r.name, r.kind, shape, r.activations, mem, r.params, r.macs])
        else:
            rows.append(
                [
                    r.name,
                    r.kind,
                    shape,
                    _fmt_int(r.activations),
                    _fmt_bytes(mem),
                    _fmt_int(r.params),
                    _fmt_int(r.macs),
                ]
            )
    total = ["total", "", "", s.activations, s.activations * 4, s.params, s.macs]
    if not machine:
        total = [
            "total",
            "",
            "",
            _fmt_int(s.activations),
            _fmt_bytes(s.activations * 4),
            _fmt_int(s.params),
            _fmt_int(s.macs),
        ]
    rows.append(total)
    return render(columns, rows, fmt), (info, size, model, s)


def memory_report(model: Any, s: Any, size: int, channels: int, batch: int, xla: bool) -> str:
    """Forward and training-step memory: analytic and, if `xla`, XLA's analysis."""
    from jaxcnn.analysis import cost  # noqa: PLC0415

    p_bytes = s.params * 4
    lines = [
        "Memory (float32):",
        f"  forward, per image, analytic: activations {_fmt_bytes(s.activations * 4)}"
        f" (sum of the rows above) + parameters {_fmt_bytes(p_bytes)}",
        f"  training step, batch {batch}, analytic: parameters + gradients + momentum "
        f"{_fmt_bytes(3 * p_bytes)} + activations kept for the backward pass "
        f"~{_fmt_bytes(batch * s.activations * 4)}",
    ]
    if xla:
        fwd = cost.xla_forward_cost(model, size, 1, channels)
        lines.append(
            f"  forward, per image, XLA: temporaries {_fmt_bytes(fwd['temp_bytes'])}, arguments "
            f"{_fmt_bytes(fwd['argument_bytes'])} (parameters + image), output "
            f"{_fmt_bytes(fwd['output_bytes'])}"
        )
        step = cost.xla_train_step_memory(model, size, batch, channels)
        lines.append(
            f"  training step, batch {batch}, XLA: temporaries {_fmt_bytes(step['temp_bytes'])}, "
            f"arguments {_fmt_bytes(step['argument_bytes'])} (state + batch, donated)"
        )
        ratio = fwd["flops"] / (2 * s.macs) if s.macs else math.nan
        lines.append(
            f"Operations: 2 x MACs = {_fmt_int(2 * s.macs)} FLOPs; XLA's cost analysis of the "
            f"compiled forward pass: {_fmt_int(fwd['flops'])} FLOPs ({ratio:.3f}x: XLA skips the "
            "kernel taps that fall on zero padding and adds element-wise work)"
        )
    return "\n".join(lines)


def compare_rows(names: list[str]) -> list[dict[str, Any]]:
    """One dict per network: params, MACs and activations at its native resolution, top-1."""
    from tqdm import tqdm  # noqa: PLC0415

    import jaxcnn  # noqa: PLC0415
    from jaxcnn.analysis import cost  # noqa: PLC0415
    from jaxcnn.accuracy import PUBLISHED_TOP1  # noqa: PLC0415

    out = []
    for name in tqdm(names, desc="tracing", unit="net", file=sys.stderr):
        info = jaxcnn.get_model_info(name)
        s = cost.summarize(jaxcnn.create_model(info.name), info.resolution)
        top1, dataset, source = PUBLISHED_TOP1.get(info.name, (None, "", ""))
        out.append(
            {
                "name": info.name,
                "family": info.family,
                "resolution": info.resolution,
                "params": s.params,
                "macs": s.macs,
                "activation_bytes": s.activations * 4,
                "top1": top1,
                "dataset": dataset,
                "source": source,
            }
        )
    return out


def plot(rows: list[dict[str, Any]], path: str) -> list[str]:
    """The lecture's chart (top-1 vs GMACs, bubble area ~ parameters) and forward memory vs batch.

    Returns:
        the paths written.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from jaxcnn.rundir import atomic_path  # noqa: PLC0415

    written = []
    imagenet = [r for r in rows if r["top1"] is not None and r["dataset"] == "ImageNet-1k val"]
    fig, ax = plt.subplots(figsize=(11, 7))
    if imagenet:
        x = [r["macs"] / 1e9 for r in imagenet]
        y = [r["top1"] for r in imagenet]
        area = [r["params"] / 1e5 for r in imagenet]  # 1M parameters -> 10 pt^2
        ax.scatter(x, y, s=area, alpha=0.4, edgecolors="k")
        for r, xi, yi in zip(imagenet, x, y, strict=True):
            ax.annotate(r["name"], (xi, yi), fontsize=7, ha="center", va="center")
        ax.set_xscale("log")
    ax.set_xlabel("operations (GMACs, log scale, one image at the native resolution)")
    ax.set_ylabel("published ImageNet top-1 (%)")
    ax.set_title("Top-1 accuracy vs operations; bubble area proportional to parameters")
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(path)

    mem_path = path[: -len(".png")] + "_memory.png" if path.endswith(".png") else path + "_memory"
    fig, ax = plt.subplots(figsize=(9, 6))
    batches = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    for r in rows:
        params = r["params"] * 4
        ax.plot(
            batches,
            [(params + b * r["activation_bytes"]) / 2**30 for b in batches],
            label=r["name"],
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("forward pass memory (GiB, float32: parameters + every layer's output)")
    ax.set_title("Forward memory vs batch size at the native resolution")
    ax.grid(alpha=0.3, which="both")
    if len(rows) <= 20:
        ax.legend(fontsize=7)
    with atomic_path(mem_path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(mem_path)
    return written


def main(argv: list[str]) -> int:
    del argv
    runtime.configure_xla_cpu()
    import jaxcnn  # noqa: PLC0415

    if (_ARCH.value is None) == (_COMPARE.value is None):
        print("error: give exactly one of --arch=NAME or --compare=NAMES|all", file=sys.stderr)
        return 2
    if _PLOT.value and not _COMPARE.value:
        print("error: --plot needs --compare", file=sys.stderr)
        return 2
    if _SIZE.value is not None and _SIZE.value <= 0 or _BATCH.value <= 0 or _CHANNELS.value <= 0:
        print("error: --image_size, --batch_size and --channels must be positive", file=sys.stderr)
        return 2
    try:
        if _COMPARE.value:
            spec = _COMPARE.value.strip()
            names = (
                jaxcnn.list_models()
                if spec == "all"
                else [jaxcnn.get_model_info(n).name for n in spec.split(",") if n.strip()]
            )
        else:
            info = jaxcnn.get_model_info(_ARCH.value)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if _COMPARE.value:
        rows = compare_rows(names)
        fmt = _FORMAT.value
        if fmt == "json":  # the raw records, with their field names
            print(json.dumps(rows, indent=1))
        columns = [
            "name",
            "family",
            "resolution",
            "params",
            "MACs",
            "activations",
            "top-1",
            "source",
        ]
        table = []
        for r in rows:
            if fmt in ("csv", "json"):
                act = r["activation_bytes"]
                top1 = r["top1"]
            else:
                act = _fmt_bytes(r["activation_bytes"])
                top1 = "-" if r["top1"] is None else f"{r['top1']:.2f} ({r['dataset']})"
            params = r["params"] if fmt in ("csv", "json") else _fmt_int(r["params"])
            macs = r["macs"] if fmt in ("csv", "json") else _fmt_int(r["macs"])
            table.append(
                [r["name"], r["family"], r["resolution"], params, macs, act, top1, r["source"]]
            )
        if fmt != "json":
            print(render(columns, table, fmt))
        if _PLOT.value:
            for p in plot(rows, _PLOT.value):
                print(f"wrote {p}", file=sys.stderr)
        return 0

    size = _SIZE.value or info.resolution
    if size < info.min_image_size:
        print(
            f"error: {info.name} needs inputs of at least {info.min_image_size}x"
            f"{info.min_image_size} (its total stride); got --image_size={size}",
            file=sys.stderr,
        )
        return 2
    text, (info, size, model, s) = layer_table(info.name, size, _CHANNELS.value, _FORMAT.value)
    print(text)
    if _FORMAT.value in ("table", "markdown"):
        print(
            f"\n{info.name} at {size}x{size}x{_CHANNELS.value}: {_fmt_int(s.params)} parameters, "
            f"{_fmt_int(s.macs)} MACs per image (registry reference at {info.resolution}px: "
            f"{_fmt_int(info.params)} / {_fmt_int(info.macs)})."
        )
        print(memory_report(model, s, size, _CHANNELS.value, _BATCH.value, _XLA.value))
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
