"""The minimal-register lowering: one RK step as torch.fx nodes holding only a basis of what is still needed.

Same interface as `rkcompile.lowering.lower_step`, emitting `rkcompile.registers.register_program`: while
each F_i runs, only rank(later inputs, output) activation-sized registers are alive (Verner 8(9): 5 rather
than up to 10 k_j), at the price of a few more axpys (`torch.add(x, k, alpha=a)`, out of place, so autograd
saves nothing for them and torch.fx frees each replaced register at once). `choose_lowering` picks it
when it lowers the live set and reports the extra elementwise ops (it lives in `rkcompile.registers`, free of
torch, so that `rkcompile check` can show the choice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
from torch import fx
from torch.fx.node import Argument

from rkcompile import graphmeta
from rkcompile.graphmeta import NodeMeta, Role, put
from rkcompile.lowering import StepPlan, lower_step
from rkcompile.registers import LOWERINGS, LoweringChoice, choose_lowering, register_program, stage_lowering

if TYPE_CHECKING:
    from rkcompile.spec import Spec

__all__ = ["LOWERINGS", "LoweringChoice", "choose_lowering", "lower_step_registers", "lowering_function",
           "lowering_note", "stage_lowering"]

def lowering_function(lowering: str) -> Callable:
    """The emitter of a named lowering ("accumulate" or "registers")."""
    return lower_step_registers if lowering == "registers" else lower_step


def lower_step_registers(
    graph: fx.Graph,
    y: fx.Node,
    plan: StepPlan,
    evaluate: Callable[[fx.Node, int], fx.Node],
    name: str,
    meta: NodeMeta,
    scale: Callable[[fx.Node, int], fx.Node] | None = None,
) -> fx.Node:
    """Emit one RK step from `y` with the register program; arguments as for `lower_step`.

    Nodes read `{name}_z{i}` (building stage i's input), `{name}_r{i}` (registers updated after k_i)
    and `{name}_y` (the output); the tableau's edges are recorded on the output node for drawings.
    """
    t = plan.tableau
    hk = 1 if plan.learned else plan.h
    program = register_program(t, hk * plan.epsilon)
    nodes: dict[int, fx.Node] = {0: y}
    last_eval = 0
    feeds = {op.args[0]: op.stage for op in program.ops if op.kind == "eval"}
    for op in program.ops:
        if op.kind == "eval":
            assert op.stage is not None, "register_program gives every eval its stage"
            k = evaluate(nodes[op.args[0]], op.stage)
            nodes[op.out] = scale(k, op.stage) if scale is not None else k
            last_eval = op.stage + 1
            continue
        if op.out == program.output:
            label = f"{name}_y"
        elif op.out in feeds or _feeds_input(program, op.out, feeds):
            label = f"{name}_z{last_eval + 1}"
        else:
            label = f"{name}_r{last_eval}"
        x = nodes[op.args[0]]
        assert op.alpha is not None, "register_program gives every axpy and scale its alpha"
        if op.kind == "scale":
            node = graph.create_node("call_function", torch.mul, (x, float(op.alpha)), {}, name=label)
        else:
            kwargs: dict[str, Argument] = {} if op.alpha == 1 else {"alpha": float(op.alpha)}
            node = graph.create_node("call_function", torch.add, (x, nodes[op.args[1]]), kwargs, name=label)
        put(node, meta.but(role=Role.REGISTER, evaluation=last_eval or None))
        nodes[op.out] = node
    out = nodes[program.output]
    put(out, meta.but(role=Role.REGISTER, evaluation=last_eval,
                      into=tuple((j + 1, i + 1, hk * t.A[i][j]) for i in range(t.stages) for j in range(i)
                                 if t.A[i][j] != 0),
                      out=tuple((i + 1, hk * t.b[i]) for i in range(t.stages) if t.b[i] != 0)))
    return out


def _feeds_input(program, tensor: int, feeds: dict) -> bool:
    """True when `tensor` is an intermediate of a chain whose only purpose is a stage input."""
    users = [op for op in program.ops if tensor in op.args]
    return len(users) == 1 and users[0].kind == "axpy" and users[0].args[0] == tensor and (
        users[0].out in feeds or _feeds_input(program, users[0].out, feeds))


def lowering_note(model: fx.GraphModule, batch: int) -> list[str]:
    """One line per stage lowered with minimal registers: registers kept and the extra elementwise FLOPs
    (FLOP counters leave additions out, so the analysis' FLOPs do not include them)."""
    lines = []
    spec = cast("Spec", model.spec)  # the compiler sets .spec; fx types module attributes as Tensor | Module
    for n, stage in enumerate(spec.stages):
        choice = stage_lowering(stage)
        if choice is None or choice.lowering != "registers":
            continue
        size = stage.width
        if spec.input.is_image:
            size = None
            for node in model.graph.nodes:  # the state's elements per sample, from the analysis' shapes
                rk, cost = graphmeta.get(node), node.meta.get("cost") or {}
                if rk is not None and rk.stage == n and cost.get("shape"):
                    size = int(torch.tensor(cost["shape"][1:]).prod())
                    break
        extra = choice.extra_axpys * stage.blocks * 2 * batch * (size or 0)
        lines.append(f"stage{n}: minimal-register lowering, {choice.register_registers} registers across each F "
                     f"instead of {choice.accumulate_registers}; {choice.extra_axpys:+d} axpys per step "
                     f"({extra / 1e6:+,.1f} MFLOP at batch {batch}, not counted above)")
    return lines
