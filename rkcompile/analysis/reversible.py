"""Training memory of reversible stages, from the per-node costs of the same network with ordinary backprop.

What `rkcompile.reversible` does, and `measure_step` sees. Forward: block b runs without autograd holding
y_{b−1} and y_b (and the stage input, which the caller holds), F's temporaries, then f_b while the combination
runs; at the end (y_{N−1}, y_N) are saved. Backward, block b from last to first: autograd still holds what was
saved before the stage, the network output and (y_{N−1}, y_N); the rebuilt states y_{b+1}, y_b are alive; F_b
runs again saving its tensors, the inverse step makes y_{b−1} (one new tensor), and the combination runs again
into a new y_{b+1}. Rebuilt states and that new output are storages of their own (keys that no node of the
plain graph has). Gradients are left out, as in `rkcompile.analysis.checkpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import fx

from rkcompile.analysis.units import node_unit
from rkcompile.reversible import block_parts, stage_states

__all__ = ["ReversibleCosts", "reversible_costs"]


@dataclass
class _BlockKeys:
    """One block's rows (F's and the combination's) and the storages backward holds while it runs them again."""

    next: set  # y_{b+1} as backward holds it
    y: set  # y_b
    previous: set | None  # y_{b−1}, rebuilt by the inverse step (None: the block does not read it)
    rename: dict  # plain-graph storage → the storage backward really uses (rebuilt states, the new y_{b+1})
    f_rows: list[int]
    c_rows: list[int]
    f: set  # f_b
    f_created: set
    c_created: set


@dataclass
class ReversibleCosts:
    """One reversible stage: its rows, per-row forward live storages, the saved states, and its backward."""

    rows: set[int]
    last: int  # the stage's last row: where (y_{N−1}, y_N) are saved
    live: dict[int, set]  # row → storages alive while it runs forward (without autograd)
    stored: dict  # storage → bytes of (y_{N−1}, y_N)
    blocks: list[_BlockKeys] = field(default_factory=list)

    def backward(self, size: dict, alive: dict[int, set], saves: list[dict], flops: list[int], held: set,
                 outputs: set) -> tuple[dict[int, int], dict[int, int]]:
        """Per row, the peak bytes while backward runs it again, and the FLOPs it spends doing so."""
        peaks: dict[int, int] = {}
        spent: dict[int, int] = {}
        base = set(held) | set(outputs) | set(self.stored)

        def total(*parts) -> int:
            return sum(size.get(k, 0) for k in base.union(*parts))

        for block in reversed(self.blocks):
            window = block.next | block.y
            again: set = set()
            for i in block.f_rows:
                again |= _mapped(block.rename, saves[i])
                peaks[i] = total(window, again, _mapped(block.rename, alive[i] & block.f_created))
                spent[i] = flops[i]
            if block.previous is not None:
                f_row = block.f_rows[-1]
                peaks[f_row] = max(peaks[f_row], total(window, block.previous, again, block.f))
                window = window | block.previous
            for i in block.c_rows:
                again |= _mapped(block.rename, saves[i])
                peaks[i] = total(window, again, block.f, _mapped(block.rename, alive[i] & block.c_created))
                spent[i] = flops[i]
        return peaks, spent


def _mapped(rename: dict, keys) -> set:
    return {rename.get(k, k) for k in keys}


def reversible_costs(nodes: list[fx.Node], size: dict, alive: dict[int, set], spec, n: int) -> ReversibleCosts:
    """The forward live sets, saved states and backward layout of reversible stage `n` of a predicted plain graph."""
    stage = spec.stages[n]
    index = {node: i for i, node in enumerate(nodes)}
    labels = [f"stage{n}.block{b}" for b in range(stage.blocks)]
    members: dict[str, list[fx.Node]] = {label: [] for label in labels}
    for node in nodes:
        unit = node_unit(node)
        if unit is not None and unit in members:
            members[unit].append(node)
    states = stage_states(members, labels)
    keys = [set(s.meta["cost"]["storages"]) for s in states]
    rows = {index[m] for label in labels for m in members[label]}
    created = set().union(*(nodes[i].meta["cost"]["storages"] for i in rows))
    stored = {k: size[k] for k in keys[-2] | keys[-1]}
    blocks = len(labels)

    def rebuilt(j: int) -> set:  # y_j as backward holds it: the saved tensor, or one rebuilt by the inverse step
        if j >= blocks - 1:
            return keys[j]
        tag = f"stage{n}.y{j}"
        size[tag] = sum(size[k] for k in keys[j])
        return {tag}

    live: dict[int, set] = {}
    layout = []
    for b, label in enumerate(labels):
        mine = [index[m] for m in members[label]]
        own = set().union(*(nodes[i].meta["cost"]["storages"] for i in mine))
        holding = keys[max(b - 1, 0)] | keys[b] | keys[0]
        out_tag = f"stage{n}.out{b}"
        size[out_tag] = sum(size[k] for k in keys[b + 1])
        rename: dict = dict(zip(sorted(keys[b]), sorted(rebuilt(b)))) if rebuilt(b) != keys[b] else {}
        rename.update({k: out_tag for k in keys[b + 1]})
        if b < stage.tableau.startup_steps:
            for i in mine:
                live[i] = holding | (alive[i] & own)
            layout.append(_BlockKeys(rebuilt(b + 1), rebuilt(b), None, rename, [], mine, set(), set(), own))
            continue
        evaluation, f, rest = block_parts(members[label])
        f_rows, c_rows = [index[m] for m in evaluation], [index[m] for m in rest]
        f_created = set().union(*(nodes[i].meta["cost"]["storages"] for i in f_rows))
        f_keys = set(f.meta["cost"]["storages"])
        for i in f_rows:
            live[i] = holding | (alive[i] & f_created)
        for i in c_rows:
            live[i] = holding | f_keys | (alive[i] & (own - f_created))
        previous = None
        if b > 0 and any(states[b - 1] in m.all_input_nodes for m in rest):
            previous = rebuilt(b - 1)
            if previous != keys[b - 1]:
                rename.update(zip(sorted(keys[b - 1]), sorted(previous)))
        layout.append(_BlockKeys(rebuilt(b + 1), rebuilt(b), previous, rename, f_rows, c_rows, f_keys, f_created,
                                 own - f_created))
    outside = {i: alive[i] - created - keys[0] for i in rows}
    live = {i: live[i] | outside[i] for i in rows}
    return ReversibleCosts(rows, max(rows), live, stored, layout)
