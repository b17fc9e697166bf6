"""Tensor shapes for a drawing's edges, read from the analysis' per-node cost records (`node.meta["cost"]`).

The analysis propagates meta tensors through the graph (`rkcompile.analysis.predict`); a unit's input is
the value that first enters it from outside, its output the value of its last node.
"""

from __future__ import annotations

import torch
from torch import fx

from rkcompile.analysis.units import node_unit

__all__ = ["UnitShapes", "unit_shapes", "shape_text"]


class UnitShapes:
    """The shapes entering and leaving each unit ("stem", "stage0.block3", ...), the network's input and output."""

    def __init__(self, inputs: dict[str, tuple | None], outputs: dict[str, tuple | None], network_in, network_out) -> None:
        self.inputs, self.outputs = inputs, outputs
        self.network_in, self.network_out = network_in, network_out

    def into(self, label: str) -> str:
        """The shape of the tensor entering unit `label`, as text ("" when unknown)."""
        return shape_text(self.inputs.get(label))

    def out_of(self, label: str) -> str:
        """The shape of the tensor unit `label` produces, as text."""
        return shape_text(self.outputs.get(label))


def unit_shapes(model: fx.GraphModule, batch: int = 1, dtype: torch.dtype = torch.float32) -> UnitShapes:
    """Per-unit input and output shapes; runs the analysis' shape propagation if it has not run on `model`."""
    if any("cost" not in n.meta for n in model.graph.nodes if n.op != "output"):
        from rkcompile.analysis import predict

        predict(model, batch, dtype)
    inputs: dict[str, tuple | None] = {}  # None: a unit whose shape was not propagated
    outputs: dict[str, tuple | None] = {}
    network_in = network_out = None
    for n in model.graph.nodes:
        if n.op == "placeholder":
            network_in = _shape(n)
            continue
        if n.op == "output":
            arg = n.args[0]
            network_out = _shape(arg) if isinstance(arg, fx.Node) else None
            continue
        unit = node_unit(n)
        if unit is None:
            continue
        outputs[unit] = _shape(n)
        if unit not in inputs:
            source = next((a for a in n.all_input_nodes if node_unit(a) != unit and a.op != "get_attr"), None)
            inputs[unit] = _shape(source) if source is not None else network_in
    return UnitShapes(inputs, outputs, network_in, network_out)


def _shape(node: fx.Node) -> tuple | None:
    return (node.meta.get("cost") or {}).get("shape")


def shape_text(shape) -> str:
    """"1×64×32×32" for a shape tuple, "" for None."""
    return "" if shape is None else "×".join(str(d) for d in shape)
