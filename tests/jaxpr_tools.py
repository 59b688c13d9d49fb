"""Structural checks on traced programs (no compilation): which inputs reach which outputs, and
whether a program draws random numbers. Used by tests/models/test_registry_contract.py."""

from typing import Any

from jax.extend import core as ext_core

# Primitives through which no gradient flows.
_NO_GRADIENT = {"stop_gradient"}
_RANDOM = ("random_bits", "random_seed", "threefry2x32")


def _sub_jaxprs(eqn) -> list:
    out = []
    for v in eqn.params.values():
        for item in v if isinstance(v, tuple | list) else (v,):
            if isinstance(item, ext_core.ClosedJaxpr):
                out.append(item.jaxpr)
            elif isinstance(item, ext_core.Jaxpr):
                out.append(item)
    return out


def _propagate(jaxpr, in_deps: list[int]) -> list[int]:
    """Bitmask of the inputs each output depends on (differentiably)."""
    env: dict[Any, int] = {}

    def read(v) -> int:
        return 0 if isinstance(v, ext_core.Literal) else env.get(v, 0)

    for var, d in zip(jaxpr.invars, in_deps, strict=True):
        env[var] = d
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        if eqn.primitive.name in _NO_GRADIENT:
            outs = [0] * len(eqn.outvars)
        else:
            subs = [j for j in _sub_jaxprs(eqn) if len(j.invars) == len(ins)]
            if len(subs) >= 1 and all(len(j.outvars) == len(eqn.outvars) for j in subs):
                # A call (jit, custom_jvp, remat) or the branches of a cond: follow the body.
                outs = [0] * len(eqn.outvars)
                for j in subs:
                    outs = [a | b for a, b in zip(outs, _propagate(j, ins), strict=True)]
            else:
                union = 0
                for d in ins:
                    union |= d
                outs = [union] * len(eqn.outvars)
        for var, d in zip(eqn.outvars, outs, strict=True):
            env[var] = d
    return [read(v) for v in jaxpr.outvars]


def inputs_reaching_outputs(closed_jaxpr, num_outputs: int | None = None) -> int:
    """Bitmask over the jaxpr's inputs of those that one of its first `num_outputs` outputs
    (default: all) depends on."""
    jaxpr = closed_jaxpr.jaxpr
    deps = _propagate(jaxpr, [1 << i for i in range(len(jaxpr.invars))])
    union = 0
    for d in deps[:num_outputs]:
        union |= d
    return union


def draws_random_numbers(closed_jaxpr) -> bool:
    """Whether the program (or any sub-program) generates random bits."""

    def walk(jaxpr) -> bool:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in _RANDOM:
                return True
            if any(walk(j) for j in _sub_jaxprs(eqn)):
                return True
        return False

    return walk(closed_jaxpr.jaxpr)
