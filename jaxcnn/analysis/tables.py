"""Cost tables and the lecture's charts, for one network or for many.

`layer_table(arch, image_size, channels, fmt)`: a row per layer (name, kind, output shape,
activations and their memory, parameters, MACs) from the traced program (`jaxcnn.analysis.cost`);
`memory_report(...)`: the memory of a forward pass per image and of a training step (analytic, and
from XLA's memory analysis of the compiled programs) and XLA's FLOP count beside 2 x MACs;
`compare_rows(names)`: params, MACs, activation memory and published top-1 of each network;
`plot(rows, path)`: top-1 against GMACs (bubble area ~ parameters) and forward memory against
batch size; `render(columns, rows, fmt)`: table, markdown, csv or json text. The command is
`python -m jaxcnn.summary`.
"""

import csv
import io
import json
import math
import sys
from typing import Any

from jaxcnn import rundir

MIB = 2**20


def fmt_int(n: float) -> str:
    return f"{int(n):,}"


def fmt_bytes(n: float) -> str:
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
    from jaxcnn.analysis import cost
    from jaxcnn.models import create_model, get_model_info

    info = get_model_info(arch)
    size = image_size or info.resolution
    model = create_model(info.name)
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
                    fmt_int(r.activations),
                    fmt_bytes(mem),
                    fmt_int(r.params),
                    fmt_int(r.macs),
                ]
            )
    total = ["total", "", "", s.activations, s.activations * 4, s.params, s.macs]
    if not machine:
        total = [
            "total",
            "",
            "",
            fmt_int(s.activations),
            fmt_bytes(s.activations * 4),
            fmt_int(s.params),
            fmt_int(s.macs),
        ]
    rows.append(total)
    return render(columns, rows, fmt), (info, size, model, s)


def memory_report(model: Any, s: Any, size: int, channels: int, batch: int, xla: bool) -> str:
    """Forward and training-step memory: analytic and, if `xla`, XLA's analysis."""
    from jaxcnn.analysis import xla_cost

    p_bytes = s.params * 4
    lines = [
        "Memory (float32):",
        f"  forward, per image, analytic: activations {fmt_bytes(s.activations * 4)}"
        f" (sum of the rows above) + parameters {fmt_bytes(p_bytes)}",
        f"  training step, batch {batch}, analytic: parameters + gradients + momentum "
        f"{fmt_bytes(3 * p_bytes)} + activations kept for the backward pass "
        f"~{fmt_bytes(batch * s.activations * 4)}",
    ]
    if xla:
        fwd = xla_cost.xla_forward_cost(model, size, 1, channels)
        lines.append(
            f"  forward, per image, XLA: temporaries {fmt_bytes(fwd['temp_bytes'])}, arguments "
            f"{fmt_bytes(fwd['argument_bytes'])} (parameters + image), output "
            f"{fmt_bytes(fwd['output_bytes'])}"
        )
        step = xla_cost.xla_train_step_memory(model, size, batch, channels)
        lines.append(
            f"  training step, batch {batch}, XLA: temporaries {fmt_bytes(step['temp_bytes'])}, "
            f"arguments {fmt_bytes(step['argument_bytes'])} (state + batch, donated)"
        )
        ratio = fwd["flops"] / (2 * s.macs) if s.macs else math.nan
        lines.append(
            f"Operations: 2 x MACs = {fmt_int(2 * s.macs)} FLOPs; XLA's cost analysis of the "
            f"compiled forward pass: {fmt_int(fwd['flops'])} FLOPs ({ratio:.3f}x: XLA skips the "
            "kernel taps that fall on zero padding and adds element-wise work)"
        )
    return "\n".join(lines)


def compare_rows(names: list[str]) -> list[dict[str, Any]]:
    """One dict per network: params, MACs and activations at its native resolution, top-1."""
    from tqdm import tqdm

    from jaxcnn.analysis import cost
    from jaxcnn.models import create_model, get_model_info
    from jaxcnn.reference import PUBLISHED_TOP1

    out = []
    for name in tqdm(names, desc="tracing", unit="net", file=sys.stderr):
        info = get_model_info(name)
        s = cost.summarize(create_model(info.name), info.resolution)
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


def compare_table(rows: list[dict[str, Any]], fmt: str) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the `--compare` table; numbers raw for csv, readable otherwise."""
    columns = ["name", "family", "resolution", "params", "MACs", "activations", "top-1", "source"]
    raw = fmt == "csv"
    table = []
    for r in rows:
        if raw:
            act, top1, params, macs = r["activation_bytes"], r["top1"], r["params"], r["macs"]
        else:
            act, params, macs = (
                fmt_bytes(r["activation_bytes"]),
                fmt_int(r["params"]),
                fmt_int(r["macs"]),
            )
            top1 = "-" if r["top1"] is None else f"{r['top1']:.2f} ({r['dataset']})"
        table.append(
            [r["name"], r["family"], r["resolution"], params, macs, act, top1, r["source"]]
        )
    return columns, table


def plot(rows: list[dict[str, Any]], path: str) -> list[str]:
    """The lecture's chart (top-1 vs GMACs, bubble area ~ parameters) and forward memory vs batch.

    Returns:
        the paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    with rundir.atomic_path(path) as tmp, tmp.open("wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
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
    with rundir.atomic_path(mem_path) as tmp, tmp.open("wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(mem_path)
    return written
