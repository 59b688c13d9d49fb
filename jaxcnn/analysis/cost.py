"""What a network costs, layer by layer: output shapes, activations, parameters, MACs, receptive field.

Everything here reads the traced program (`jax.make_jaxpr`) of a model's forward pass, never its
source: Flax records each submodule's path in the name stack of the operations it emits, so a
convolution traced inside `stage1_block1/conv1/conv` is that layer's row. Tracing needs no compute,
so the table of a 100-layer network at 224 px takes seconds on a laptop.

Conventions (those of the reference figures in `jaxcnn.reference`): MACs are the
multiply-accumulates of convolutions and fully connected layers only, for one image; activations
are the elements of each layer's output for one image (ReLUs and other element-wise ops are not
rows: they are usually applied in place or fused); parameters are those of the layer's module.
"""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util
from jax.extend import core as jcore

# Layers of a row's kind, in the order the table prints them.
KINDS = ("input", "conv", "linear", "norm", "pool", "global_pool", "concat")


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """One row of the table.

    Attributes:
        name: the module path (`stage1_block1/conv1/conv`), or the parent's path and the
            operation (`stage1/max_pool`) for layers that are functions, not modules.
        kind: one of `KINDS`.
        shape: the output shape of one image (H, W, C) or (D,).
        params: parameters of the layer.
        macs: multiply-accumulates for one image (convolutions and linear layers).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    macs: int

    @property
    def activations(self) -> int:
        """Output elements for one image."""
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class Equation:
    """A primitive of the flattened program: name stack, inputs and outputs as var ids."""

    primitive: str
    params: dict[str, Any]
    name_stack: str
    inputs: tuple[Any, ...]  # var ids (int) or None for literals
    in_shapes: tuple[tuple[int, ...], ...]
    outputs: tuple[int, ...]
    out_shapes: tuple[tuple[int, ...], ...]


def _sub_jaxpr(eqn) -> Any:
    """The body of a call-like equation (jit, custom_jvp/vjp, remat), if it has exactly one."""
    bodies = []
    for v in eqn.params.values():
        if isinstance(v, jcore.ClosedJaxpr):
            bodies.append(v.jaxpr)
        elif isinstance(v, jcore.Jaxpr):
            bodies.append(v)
    if (
        len(bodies) == 1
        and len(bodies[0].invars) == len(eqn.invars)
        and len(bodies[0].outvars) == len(eqn.outvars)
    ):
        return bodies[0]
    return None


def flatten_program(closed_jaxpr) -> tuple[list[Equation], list[int], list[int]]:
    """Inlines call-like equations into one list of primitives with numbered variables.

    Returns:
        (equations, input var ids, output var ids).
    """
    counter = iter(range(1 << 62))
    out: list[Equation] = []

    def shape(v) -> tuple[int, ...]:
        return tuple(getattr(v.aval, "shape", ()))

    def walk(jaxpr, env: dict, prefix: str) -> None:
        def read(v):
            return None if isinstance(v, jcore.Literal) else env[v]

        for eqn in jaxpr.eqns:
            stack = str(eqn.source_info.name_stack)
            stack = f"{prefix}/{stack}".strip("/") if prefix and stack else (prefix or stack)
            body = _sub_jaxpr(eqn)
            if body is not None:
                inner = {}
                for bv, v in zip(body.invars, eqn.invars, strict=True):
                    inner[bv] = read(v)
                for cv in body.constvars:
                    inner[cv] = next(counter)
                walk(body, inner, stack)
                for ov, bv in zip(eqn.outvars, body.outvars, strict=True):
                    env[ov] = None if isinstance(bv, jcore.Literal) else inner[bv]
                continue
            ids = tuple(next(counter) for _ in eqn.outvars)
            for v, i in zip(eqn.outvars, ids, strict=True):
                env[v] = i
            out.append(
                Equation(
                    primitive=eqn.primitive.name,
                    params=dict(eqn.params),
                    name_stack=stack,
                    inputs=tuple(read(v) for v in eqn.invars),
                    in_shapes=tuple(shape(v) for v in eqn.invars),
                    outputs=ids,
                    out_shapes=tuple(shape(v) for v in eqn.outvars),
                )
            )

    jaxpr = closed_jaxpr.jaxpr
    env = {v: next(counter) for v in jaxpr.invars}
    for v in jaxpr.constvars:
        env[v] = next(counter)
    inputs = [env[v] for v in jaxpr.invars]
    walk(jaxpr, env, "")
    outputs = [None if isinstance(v, jcore.Literal) else env[v] for v in jaxpr.outvars]
    return out, inputs, outputs


def _live(eqns: list[Equation], outputs: list[int | None]) -> list[Equation]:
    """The equations the outputs depend on: work whose result is unused (GoogLeNet's auxiliary
    heads in eval mode) is removed by XLA and not counted here either."""
    live = {o for o in outputs if o is not None}
    keep = []
    for eqn in reversed(eqns):
        if any(o in live for o in eqn.outputs):
            keep.append(eqn)
            live.update(i for i in eqn.inputs if i is not None)
    return keep[::-1]


def _conv_macs(eqn: Equation) -> int:
    """Per-image MACs of `conv_general_dilated`: each output element reads kernel / out-features
    weights (the kernel's input-feature axis is already divided by the group count)."""
    out, kernel = eqn.out_shapes[0], eqn.in_shapes[1]
    dn = eqn.params["dimension_numbers"]
    out_features = kernel[dn.rhs_spec[0]]
    batch = out[dn.out_spec[0]]
    return math.prod(out) // batch * (math.prod(kernel) // out_features)


def _dot_macs(eqn: Equation) -> int:
    """Per-image MACs of `dot_general` with the batch on the left operand's leading axis."""
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.in_shapes[0]
    contracted = math.prod(lhs[a] for a in lhs_contract)
    return math.prod(eqn.out_shapes[0]) // eqn.out_shapes[0][0] * contracted


def trace_forward(
    model: Any, image_size: int, channels: int = 3
) -> tuple[Any, dict[str, Any], tuple[int, ...]]:
    """Traces `model` in eval mode on one (image_size, image_size, channels) image.

    Returns:
        (closed jaxpr whose inputs are the flattened variables then the image, variable shapes,
        image shape).
    """
    x = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return jaxpr, variables, x.shape


def layer_costs(model: Any, image_size: int, channels: int = 3) -> list[LayerCost]:
    """The table of `model` at `image_size` (eval mode, one image).

    Rows: the input; every leaf module that computes (convolution, linear, normalisation) with its
    parameters; every pooling and concatenation its parent applies as a function.

    Args:
        model: a jaxcnn (or any Flax linen) image model taking `(x, train=...)`.
        image_size: input side in pixels.
        channels: input channels.
    """
    return costs_of_program(*trace_forward(model, image_size, channels))


def costs_of_program(
    jaxpr: Any,
    variables: dict[str, Any],
    x_shape: tuple[int, ...],
    outputs: Sequence[int] | None = None,
) -> list[LayerCost]:
    """The rows of `layer_costs` from an eval-mode program traced by `trace_forward`.

    `outputs`: indices of the program's (flattened) outputs whose computation counts; default all.
    """
    eqns, _, out_ids = flatten_program(jaxpr)
    eqns = _live(eqns, out_ids if outputs is None else [out_ids[i] for i in outputs])
    params = traverse_util.flatten_dict(variables.get("params", {}), sep="/")
    params_of: dict[str, int] = {}
    for path, leaf in params.items():
        module = path.rsplit("/", 1)[0]
        params_of[module] = params_of.get(module, 0) + math.prod(leaf.shape)
    stats = {
        p.rsplit("/", 1)[0]
        for p in traverse_util.flatten_dict(variables.get("batch_stats", {}), sep="/")
    }

    def module_path(stack: str) -> str:
        # `ResNet/ResNet._forward/stage1_block1/conv1/conv` -> `stage1_block1/conv1/conv`: drop
        # the top-level class name and the method scopes (`Class.method`).
        return "/".join(p for p in stack.split("/")[1:] if "." not in p)

    # A module path is a leaf if no equation runs in a deeper path.
    paths = [module_path(e.name_stack) for e in eqns]
    parents = {p.rsplit("/", 1)[0] for p in paths if "/" in p}
    rows = [LayerCost("input", "input", tuple(x_shape[1:]), 0, 0)]
    open_rows: dict[str, int] = {}  # leaf module path -> index of its row
    counts: dict[str, int] = {}  # numbering of function layers: max_pool1, max_pool2, ...

    def numbered(path: str, op: str) -> str:
        key = f"{path}/{op}".strip("/")
        counts[key] = counts.get(key, 0) + 1
        return f"{key}{counts[key]}"

    for eqn, path in zip(eqns, paths, strict=True):
        is_leaf = (
            bool(path)
            and path not in parents
            and (path in params_of or path in stats or "Norm" in path.rsplit("/", 1)[-1])
        )
        if is_leaf:
            if path not in open_rows:
                open_rows[path] = len(rows)
                rows.append(LayerCost(path, "norm", (), params_of.get(path, 0), 0))
            i = open_rows[path]
            row = rows[i]
            kind, macs = row.kind, row.macs
            if eqn.primitive == "conv_general_dilated":
                kind, macs = "conv", macs + _conv_macs(eqn)
            elif eqn.primitive == "dot_general":
                kind, macs = "linear", macs + _dot_macs(eqn)
            # The module's output: the last equation it emits (bias add, BN affine, ...).
            rows[i] = dataclasses.replace(row, kind=kind, macs=macs, shape=eqn.out_shapes[0][1:])
            continue
        # Operations a parent applies as functions.
        if eqn.primitive.startswith("reduce_window"):
            op = "max_pool" if eqn.primitive == "reduce_window_max" else "avg_pool"
            rows.append(LayerCost(numbered(path, op), "pool", eqn.out_shapes[0][1:], 0, 0))
        elif eqn.primitive in ("reduce_sum", "reduce_max") and set(eqn.params["axes"]) == {1, 2}:
            rows.append(
                LayerCost(numbered(path, "global_pool"), "global_pool", eqn.out_shapes[0][1:], 0, 0)
            )
        elif eqn.primitive == "concatenate" and len(eqn.out_shapes[0]) == 4:
            rows.append(LayerCost(numbered(path, "concat"), "concat", eqn.out_shapes[0][1:], 0, 0))
    return rows


@dataclasses.dataclass(frozen=True)
class Summary:
    """Totals of a table, for one image.

    Attributes:
        rows: the per-layer rows.
        params: all parameters of the model.
        macs: convolution + linear MACs.
        activations: output elements summed over the rows (input included).
    """

    rows: list[LayerCost]
    params: int
    macs: int
    activations: int

    def activation_bytes(self, dtype: Any = jnp.float32) -> int:
        return self.activations * jnp.dtype(dtype).itemsize


def summarize(model: Any, image_size: int, channels: int = 3) -> Summary:
    """Per-layer rows and their totals (see `layer_costs`)."""
    rows = layer_costs(model, image_size, channels)
    x = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    params = sum(math.prod(p.shape) for p in jax.tree.leaves(variables.get("params", {})))
    return Summary(
        rows=rows,
        params=params,
        macs=sum(r.macs for r in rows),
        activations=sum(r.activations for r in rows),
    )


# --- Receptive fields -------------------------------------------------------------------------


def receptive_field_of_layers(layers: Sequence[tuple[int, int] | tuple[int, int, int]]) -> int:
    """Receptive field (in input pixels) of a stack of convolutions / poolings.

    Args:
        layers: (kernel, stride) or (kernel, stride, dilation) per layer, input first.

    Returns:
        r_L = 1 + sum_l (k_l - 1) * d_l * prod_{i<l} s_i. Three 3x3 stride-1 convs: 7.
    """
    rf, jump = 1, 1
    for layer in layers:
        k, s, d = (*layer, 1) if len(layer) == 2 else layer
        rf += (k - 1) * d * jump
        jump *= s
    return rf


def receptive_field(model: Any, image_size: int, channels: int = 3) -> dict[str, int]:
    """Receptive field of a model's last spatial feature map, by following its traced program.

    Every convolution and pooling window widens the field of its output by
    `(k - 1) * dilation * jump` pixels, where `jump` is the product of the strides before it;
    element-wise ops, concatenations and additions take the widest field of their inputs (so a
    residual network's field is that of its deepest path).

    Returns:
        A dict: `receptive_field` (pixels, may exceed the image), `jump` (the feature map's stride
        in input pixels) and `feature_shape` (H, W, C) of that feature map.
    """
    jaxpr, _, x_shape = trace_forward(model, image_size, channels)
    eqns, inputs, _ = flatten_program(jaxpr)
    field: dict[int, tuple[int, int]] = {inputs[-1]: (1, 1)}
    last: tuple[int, int, tuple[int, ...]] | None = None
    for eqn in eqns:
        known = [field[i] for i in eqn.inputs if i is not None and i in field]
        if not known:
            continue
        rf = max(r for r, _ in known)
        jump = max(j for _, j in known)
        out_shape = eqn.out_shapes[0]
        if eqn.primitive == "conv_general_dilated":
            dn = eqn.params["dimension_numbers"]
            kernel = eqn.in_shapes[1]
            k = kernel[dn.rhs_spec[2]]
            s = eqn.params["window_strides"][0]
            d = eqn.params["rhs_dilation"][0]
            rf, jump = rf + (k - 1) * d * jump, jump * s
        elif eqn.primitive.startswith("reduce_window"):
            k, s = eqn.params["window_dimensions"][1], eqn.params["window_strides"][1]
            if eqn.params["window_dimensions"][1:3] == (1, 1):  # a window over channels (LRN)
                k, s = 1, 1
            rf, jump = rf + (k - 1) * jump, jump * s
        elif eqn.primitive == "slice" and eqn.params.get("strides"):
            jump *= eqn.params["strides"][1]  # strided subsampling (option-A shortcuts)
        spatial_ops = ("conv_general_dilated", "pad", "slice")
        if len(out_shape) < 4 or (
            not eqn.primitive.startswith(spatial_ops + ("reduce_window",))
            and all(tuple(s[1:3]) != tuple(out_shape[1:3]) for s in eqn.in_shapes if len(s) >= 4)
        ):
            continue  # the spatial axes are gone (global pooling, flattening, NCHW transposes)
        if eqn.primitive == "transpose" and tuple(eqn.params["permutation"][1:3]) != (1, 2):
            continue
        for o in eqn.outputs:
            field[o] = (rf, jump)
        last = (rf, jump, out_shape[1:])
    if last is None:
        raise ValueError("the model has no spatial feature map")
    return {"receptive_field": last[0], "jump": last[1], "feature_shape": last[2]}


# --- The Inception module's operations (Szegedy et al. 2014, the lecture's worked example) -------


def inception_module_ops(
    height: int,
    width: int,
    in_channels: int,
    branches: dict[str, int],
    reduce: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Multiply-accumulates of a naive or a bottleneck ("dimension reduction") Inception module.

    Args:
        height, width, in_channels: the module's input (stride 1, 'same' padding throughout).
        branches: output channels of `1x1`, `3x3`, `5x5` convolutions (the pool branch passes
            the input's channels through in the naive module).
        reduce: for the bottleneck module, the 1x1 reductions: `3x3` and `5x5` (before those
            convolutions) and `pool` (the 1x1 projection after the 3x3 max pool). None: naive.

    Returns:
        `terms` (name -> MACs), `total` MACs, `out_channels`, `params` (weights, no biases).
    """
    hw = height * width
    terms, params = {}, 0

    def conv(name: str, k: int, cin: int, cout: int) -> None:
        nonlocal params
        terms[name] = hw * k * k * cin * cout
        params += k * k * cin * cout

    conv(f"1x1 conv, {branches['1x1']}", 1, in_channels, branches["1x1"])
    if reduce is None:
        conv(f"3x3 conv, {branches['3x3']}", 3, in_channels, branches["3x3"])
        conv(f"5x5 conv, {branches['5x5']}", 5, in_channels, branches["5x5"])
        out = branches["1x1"] + branches["3x3"] + branches["5x5"] + in_channels
    else:
        for k in ("3x3", "5x5"):
            conv(f"1x1 conv, {reduce[k]} (before {k})", 1, in_channels, reduce[k])
            conv(f"{k} conv, {branches[k]}", int(k[0]), reduce[k], branches[k])
        conv(f"1x1 conv, {reduce['pool']} (after pool)", 1, in_channels, reduce["pool"])
        out = branches["1x1"] + branches["3x3"] + branches["5x5"] + reduce["pool"]
    return {"terms": terms, "total": sum(terms.values()), "out_channels": out, "params": params}
