"""Training memory with checkpointed groups of blocks, from the costs of the same network without them.

What non-reentrant `torch.utils.checkpoint` does (and `measure_step` sees): in the forward pass a group saves
nothing but keeps its input; everything else is saved as usual. In backward, groups are recomputed last to
first; when group g runs again, autograd still holds what was saved before g (and the inputs of g and of the
groups before it), everything after g has already been released, and the recomputation saves g's tensors
again up to the last one backward needs (it stops early there). The training peak is the larger of the
forward peak and every recomputation's peak; the recomputed FLOPs are those of the groups' nodes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from torch import fx

from rkcompile.analysis.reversible import reversible_costs
from rkcompile.analysis.units import node_unit

__all__ = ["CheckpointCosts", "UnitCost", "checkpoint_costs", "unit_costs"]


@dataclass(frozen=True)
class CheckpointCosts:
    """Per-node training bytes and newly held bytes under checkpointing, the totals and the recomputed FLOPs."""

    inference: dict[str, int]  # node → bytes live while it runs without autograd (a group's caller holds its input)
    training: dict[str, int]  # node → bytes live or held at its peak (forward, or its recomputation)
    saved: dict[str, int]  # node → bytes it newly makes autograd hold in the forward pass
    training_peak: int
    saved_bytes: int  # held for backward at the end of the forward pass
    recompute_flops: dict[str, int]  # node → FLOPs spent running it again in backward


def checkpoint_costs(model: fx.GraphModule, groups: list[tuple[int, int, int]],
                     reversible: list[int] | tuple[int, ...] = ()) -> CheckpointCosts:
    """Costs of `model` (predicted, plain backprop) when `groups` (stage, first, last) are checkpointed and the
    stages in `reversible` run with reversible backprop (`rkcompile.analysis.reversible`)."""
    nodes = [n for n in model.graph.nodes if "cost" in n.meta]
    index = {n: i for i, n in enumerate(nodes)}
    size, alive = _alive(nodes)
    stages = [reversible_costs(nodes, size, alive, model.spec, r) for r in reversible]
    stage_of_row = {i: s for s in stages for i in s.rows}
    live = {i: stage_of_row[i].live[i] if i in stage_of_row else alive[i] for i in range(len(nodes))}
    group_of: dict[str | None, int] = {}
    for group, (n, first, last) in enumerate(groups):
        for b in range(first, last + 1):
            group_of[f"stage{n}.block{b}"] = group
    member = [group_of.get(node_unit(n)) for n in nodes]
    inputs: dict[int, dict[int, int]] = defaultdict(dict)
    created: dict[int, set[int]] = defaultdict(set)
    for i, n in enumerate(nodes):
        g = member[i]
        if g is None:
            continue
        created[g].update(n.meta["cost"]["storages"])
        for a in n.all_input_nodes:
            if a in index and member[index[a]] != g:
                inputs[g].update(a.meta["cost"]["storages"])

    def total(*parts) -> int:
        return sum(size.get(k, 0) for k in set().union(*parts))

    held: dict[int, int] = {}
    held_bytes = 0
    before: dict[int, dict[int, int]] = {}
    training: dict[str, int] = {}
    saved: dict[str, int] = {}
    inference = {n.name: total(live[i], inputs[g] if (g := member[i]) is not None else ()) for i, n in enumerate(nodes)}
    held_before: dict[int, set[int]] = {}  # reversible stage → storages held when it starts
    for i, n in enumerate(nodes):
        g, had = member[i], held_bytes
        rev = stage_of_row.get(i)
        if rev is not None:
            held_before.setdefault(id(rev), set(held))
            new = rev.stored if i == rev.last else {}
        else:
            new = n.meta["cost"]["saves"] if g is None else inputs[g] if g not in before else {}
        for key, nbytes in new.items():
            if key not in held:
                held[key] = nbytes
                held_bytes += nbytes
        if g is not None and g not in before:
            before[g] = dict(held)
        saved[n.name] = held_bytes - had
        training[n.name] = held_bytes + sum(size[k] for k in live[i] if k not in held)
    forward_saved = held_bytes
    outputs = set(nodes[-1].meta["cost"]["storages"]) if nodes else set()
    recompute: dict[str, int] = {}
    saves = [n.meta["cost"]["saves"] for n in nodes]
    flops = [n.meta["cost"]["flops"] for n in nodes]
    for rev in stages:
        peaks, spent = rev.backward(size, alive, saves, flops, held_before[id(rev)], outputs)
        for i, peak in peaks.items():
            training[nodes[i].name] = max(training[nodes[i].name], peak)
        recompute.update({nodes[i].name: f for i, f in spent.items()})
    for g in range(len(groups)):
        rows = [i for i in range(len(nodes)) if member[i] == g]
        savers = [i for i in rows if nodes[i].meta["cost"]["saves"]]
        again: dict[int, int] = {}
        for i in rows[: rows.index(savers[-1]) + 1] if savers else ():
            again.update(nodes[i].meta["cost"]["saves"])
            peak = total(before[g], outputs, again, alive[i] & (created[g] | set(inputs[g])))
            training[nodes[i].name] = max(training[nodes[i].name], peak)
            recompute[nodes[i].name] = nodes[i].meta["cost"]["flops"]
    peak = max(training.values(), default=0)
    return CheckpointCosts(inference, training, saved, peak, forward_saved, recompute)


@dataclass(frozen=True)
class UnitCost:
    """What the checkpoint planner needs of one unit, in bytes and FLOPs (bounds: storages counted per unit)."""

    label: str
    saves: int  # bytes the unit saves for backward when it is not checkpointed
    input: int  # bytes of its input, kept instead when a group starts here
    live: int  # most bytes live in it at once (forward, checkpointed: nothing of it is saved)
    forward: int  # most bytes of its saves so far and its live values at once (forward, not checkpointed)
    recompute: int  # peak of running it again in backward: its saves so far and its live values
    flops: int


def _alive(nodes: list[fx.Node]) -> tuple[dict[int, int], dict[int, set[int]]]:
    """Storage sizes and, per node index, the storages alive while it runs (from creation to last use)."""
    index = {n: i for i, n in enumerate(nodes)}
    size: dict[int, int] = {}
    span: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        end = max((index[u] for u in n.users if u in index), default=i)
        for key, nbytes in n.meta["cost"]["storages"].items():
            size[key] = nbytes
            entry = span.setdefault(key, [i, end])
            entry[1] = max(entry[1], end)
    alive = defaultdict(set)
    for key, (a, b) in span.items():
        for i in range(a, b + 1):
            alive[i].add(key)
    return size, alive


def unit_costs(model: fx.GraphModule, reversible: list[int] | tuple[int, ...] = ()) -> tuple[list[UnitCost], int]:
    """Per unit in graph order, the planner's costs; and the bytes of the network's output. The blocks of a
    reversible stage are one unit (`stage{n}.reversible`), which no checkpoint group can take."""
    nodes = [n for n in model.graph.nodes if "cost" in n.meta]
    size, alive = _alive(nodes)
    merged = {r: _reversible_unit(nodes, size, alive, model.spec, r) for r in reversible}
    index = {n: i for i, n in enumerate(nodes)}
    order: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        label = node_unit(n)
        if label is not None:
            order.setdefault(label, []).append(i)
    out = []
    for label, rows in order.items():
        mine = set(rows)
        saves: dict[int, int] = {}
        inputs: dict[int, int] = {}
        created: set[int] = set()
        for i in rows:
            saves.update(nodes[i].meta["cost"]["saves"])
            created.update(nodes[i].meta["cost"]["storages"])
            for a in nodes[i].all_input_nodes:
                if a in index and index[a] not in mine:
                    inputs.update(a.meta["cost"]["storages"])
        forward, so_far = 0, set()
        for i in rows:
            so_far.update(nodes[i].meta["cost"]["saves"])
            forward = max(forward, sum(size.get(k, 0) for k in so_far | alive[i]))
        again: dict[int, int] = {}
        recompute = 0
        savers = [i for i in rows if nodes[i].meta["cost"]["saves"]]
        for i in rows[: rows.index(savers[-1]) + 1] if savers else ():
            again.update(nodes[i].meta["cost"]["saves"])
            keys = set(again) | (alive[i] & (created | set(inputs)))
            recompute = max(recompute, sum(size.get(k, 0) for k in keys))
        out.append(UnitCost(label, sum(saves.values()), sum(inputs.values()),
                            max(sum(size[k] for k in alive[i]) for i in rows), forward, recompute,
                            sum(nodes[i].meta["cost"]["flops"] for i in rows)))
    outputs = sum(nodes[-1].meta["cost"]["storages"].values()) if nodes else 0
    for r, unit in merged.items():
        rows = [i for i, u in enumerate(out) if u.label.startswith(f"stage{r}.block")]
        unit = replace(unit, forward=unit.forward + outputs)
        out = out[: rows[0]] + [unit] + out[rows[-1] + 1:]
    return out, outputs


def _reversible_unit(nodes: list[fx.Node], size: dict, alive: dict, spec, n: int) -> UnitCost:
    """A reversible stage as one planner unit: it saves (y_{N−1}, y_N); its `forward` bounds both its forward
    pass and its backward (which runs on top of what is held before it, and the network output)."""
    rev = reversible_costs(nodes, size, alive, spec, n)
    saves = [m.meta["cost"]["saves"] for m in nodes]
    flops = [m.meta["cost"]["flops"] for m in nodes]
    peaks, _ = rev.backward(size, alive, saves, flops, set(), set())
    live = max(sum(size[k] for k in rev.live[i]) for i in rev.rows)
    forward = max(live, sum(size[k] for k in rev.live[rev.last] | set(rev.stored)))
    # the caller adds the network output to the backward bound (the forward bound only gains from it)
    return UnitCost(f"stage{n}.reversible", sum(rev.stored.values()), 0, live,
                    max(forward, max(peaks.values(), default=0)), 0, sum(flops[i] for i in rev.rows))
