"""Regional compilation: compile each distinct block structure once and reuse it for every block that has it.

torch.compile of the flat graph makes inductor see every block, so cold-start time grows with depth. The
compiler knows which units (stem, entry, block, head) share a structure — the same layers, shapes, tableau
coefficients and weight layout, with different parameters — so each unit becomes a small region module whose
`forward` is generated once per structure and shared by all its instances; with parameters as graph inputs
(`inline_inbuilt_nn_modules`, the default since torch 2.5) one compiled artifact serves them all (the PyTorch
recipe "regional compilation"). Cross-region fusion is lost. The regional model holds the flat model's own
modules under the same names, so parameters are shared with it and state_dicts are interchangeable; the flat
graph stays the representation for analysis and drawing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import fx, nn

from rkcompile.analysis.units import node_unit
from rkcompile.errors import RkcompileError

__all__ = ["Region", "RegionalModule", "compile", "region_graph", "regions", "structure_key"]

MODES = ("regional", "full")
_STAGE_ROOT = re.compile(r"stage\d+")
_BLOCK = re.compile(r"stage\d+\.block\d+")


def unit_of(node: fx.Node) -> str | None:
    """The unit a graph node belongs to, read from the compiler's node metadata (the one place this module does)."""
    return node_unit(node)


@dataclass
class Region:
    """One unit of the network as a region: its label, the flat nodes it reads and defines, what its code does."""

    unit: str
    inputs: list[str]  # names of flat-graph nodes it reads (placeholders in order)
    outputs: list[str]  # names of its flat-graph nodes read after it (returned in order)
    owners: dict[str, str]  # local attribute name → module path in the flat model
    code: tuple  # what its nodes do, with inputs and nodes as positions and module paths as local names
    nodes: list[fx.Node]  # its flat-graph nodes, in order
    targets: list  # each node's target, module paths local (as `owners` names them)


def compile(model: fx.GraphModule, mode: str = "regional", **torch_compile_kwargs) -> nn.Module:  # noqa: A001
    """torch.compile a compiled model: `mode="regional"` compiles each distinct block structure once, "full" the graph.

    In regional mode the stem, stage entries and head (each occurring once) run eagerly; the regional model
    shares its parameters with `model`. "full" returns `torch.compile(model, ...)`. Extra keyword arguments go to
    `torch.compile` (backend, mode, dynamic, ...).
    """
    if mode not in MODES:
        raise RkcompileError(f"compile mode {mode!r} is not one of {', '.join(MODES)}")
    if not isinstance(model, fx.GraphModule):
        raise RkcompileError(f"rkcompile.compile takes a model from rkcompile.build, not {type(model).__name__}")
    if mode == "full":
        # torch.compile of a Module returns an OptimizedModule (a Module); torch types its result as a callable
        return cast(nn.Module, torch.compile(model, **torch_compile_kwargs))
    regional = RegionalModule(model)
    for cls in regional.block_classes:
        cls.forward = torch.compile(cls.forward, **torch_compile_kwargs)
    return regional


def regions(model: fx.GraphModule) -> list[Region]:
    """Split the flat graph into one region per unit, in execution order."""
    nodes: dict[str, list[fx.Node]] = {}
    for node in model.graph.nodes:
        unit = unit_of(node)
        if unit is None:
            if node.op not in ("placeholder", "output"):
                raise RkcompileError(f"graph node {node.name!r} belongs to no unit (stem, entry, block or head)")
            continue
        nodes.setdefault(unit, []).append(node)
    return [_region(unit, members) for unit, members in nodes.items()]


def _region(unit: str, members: list[fx.Node]) -> Region:
    inside = set(members)
    inputs: dict[fx.Node, None] = {}  # an ordered set
    for node in members:
        for arg in node.all_input_nodes:
            if arg not in inside:
                inputs.setdefault(arg, None)
    outputs = [n for n in members if any(user not in inside for user in n.users)]
    owners: dict[str, str] = {}
    by_path: dict[str, str] = {}

    def local(target: str) -> str:
        if target.startswith(unit + "."):
            owners.setdefault("unit", unit)
            return "unit" + target[len(unit):]
        owner, _, leaf = target.rpartition(".")
        if not owner or _STAGE_ROOT.fullmatch(owner):  # a stage-level module (an LSTM controller): itself
            owner, leaf = target, ""
        name = by_path.setdefault(owner, f"f{len(by_path)}")
        owners[name] = owner
        return name + ("." + leaf if leaf else "")

    # call_module and get_attr targets are module paths (str); fx types every target as Callable | str
    targets = [local(cast(str, n.target)) if n.op in ("call_module", "get_attr") else n.target for n in members]
    index = {n: i for i, n in enumerate([*inputs, *members])}
    code = (len(inputs), tuple((n.op, t if n.op != "call_function" else _qualified(t),
                                repr(fx.map_arg((n.args, n.kwargs), index.__getitem__)))
                               for n, t in zip(members, targets)), tuple(index[n] for n in outputs))
    return Region(unit, [n.name for n in inputs], [n.name for n in outputs], owners, code, members, targets)


def region_graph(region: Region) -> fx.Graph:
    """The region as a graph of its own: one placeholder per value it reads, its nodes, the values it passes on."""
    strip = region.unit.replace(".", "_") + "_"
    g = fx.Graph()
    env = {name: g.placeholder(f"in{i}") for i, name in enumerate(region.inputs)}
    for node, target in zip(region.nodes, region.targets):
        name = node.name[len(strip):] if node.name.startswith(strip) else node.name
        env[node.name] = g.create_node(node.op, target, fx.map_arg(node.args, lambda a: env[a.name]),
                                       fx.map_arg(node.kwargs, lambda a: env[a.name]),
                                       name=name if name[:1].isalpha() else None)
    outs = [env[name] for name in region.outputs]
    g.output(outs[0] if len(outs) == 1 else tuple(outs))
    g.lint()
    return g


def structure_key(model: fx.GraphModule, region: Region, signatures: dict[str, tuple] | None = None) -> tuple:
    """Equal for two regions exactly when they run the same code on interchangeable modules.

    `signatures` caches each module path's signature across calls (blocks share basis pieces and stage modules).
    """
    signatures = {} if signatures is None else signatures
    for path in region.owners.values():
        if path not in signatures:
            signatures[path] = _module_signature(model.get_submodule(path))
    return region.code, tuple((local, signatures[path]) for local, path in region.owners.items())


def _qualified(fn) -> str:
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"


def _module_signature(module: nn.Module) -> tuple:
    """What makes two modules interchangeable in one compiled region: layers, shapes, dtypes; not values."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return (repr(module), tuple((n, tuple(t.shape), t.dtype, t.requires_grad) for n, t in tensors))


class RegionalModule(nn.Module):
    """The flat model run as a chain of region modules, one generated class (one `forward`) per distinct structure.

    Its children are the flat model's own children under the same names (state_dicts interchangeable); the
    flat model stays available as `.flat` for analysis and drawing.
    """

    # set in __init__ through __dict__ (not submodules); declared so that they are not typed as Tensor | Module
    flat: fx.GraphModule
    regions: list[Region]
    classes: list[type[Any]]  # one generated class (`_region_class`) per distinct structure
    instances: list[Any]  # instances of the generated classes, with .label, .inputs and .outputs set
    structures: list[list[str]]
    block_classes: list[type[Any]]

    def __init__(self, model: fx.GraphModule) -> None:
        super().__init__()
        _refuse_reversible(model)
        for name, child in model.named_children():
            self.add_module(name, child)
        self.spec = getattr(model, "spec", None)
        self.__dict__["flat"] = model  # not a submodule: its parameters are this module's own
        self.__dict__["regions"] = regions(model)
        classes: dict[tuple, type[Any]] = {}
        instances = []
        signatures: dict[str, tuple] = {}
        for region in self.regions:
            owners = {local: model.get_submodule(path) for local, path in region.owners.items()}
            key = structure_key(model, region, signatures)
            if key not in classes:
                generated = fx.GraphModule(_holder(owners), region_graph(region))
                classes[key] = _region_class(f"Region{len(classes)}", type(generated).forward)
            instance = classes[key]()
            for local, module in owners.items():
                instance.add_module(local, module)
            instance.label, instance.inputs, instance.outputs = region.unit, region.inputs, region.outputs
            instances.append(instance)
        self.__dict__["classes"] = list(classes.values())
        self.__dict__["instances"] = instances
        self.__dict__["structures"] = [[r.label for r in instances if type(r) is cls] for cls in self.classes]
        # only blocks are compiled: the stem, entries and head occur once each and run eagerly, so the number of
        # compiled regions (inductor builds) is the number of distinct block structures, whatever the depth
        self.__dict__["block_classes"] = [cls for cls, units in zip(self.classes, self.structures)
                                          if all(_BLOCK.fullmatch(u) for u in units)]
        self.input = next(n.name for n in model.graph.nodes if n.op == "placeholder")
        result = next(n for n in model.graph.nodes if n.op == "output").args[0]
        self.result = result.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the regions in order, passing each the values it reads."""
        values = {self.input: x}
        for region in self.instances:
            out = region(*[values[name] for name in region.inputs])
            if len(region.outputs) == 1:
                values[region.outputs[0]] = out
            else:
                values.update(zip(region.outputs, out))
        return values[self.result]


def _refuse_reversible(model: fx.GraphModule) -> None:
    """Reversible stages run all their blocks inside one autograd.Function: there are no block regions to compile."""
    spec = getattr(model, "spec", None)
    stages = [n for n, s in enumerate(spec.stages) if s.backprop == "reversible"] if spec is not None else []
    if stages:
        raise RkcompileError(f"regional compilation compiles blocks one structure at a time, but stage {stages[0]} "
                             "has 'backprop: reversible', which runs all its blocks inside one autograd.Function; "
                             "use mode='full' or 'backprop: saved'")


def _holder(owners: dict[str, nn.Module]) -> nn.Module:
    holder = nn.Module()
    for local, module in owners.items():
        holder.add_module(local, module)
    return holder


def _region_class(name: str, forward) -> type[Any]:
    """A fresh nn.Module class whose forward is one region's generated code, shared by every instance.

    Typed `type[Any]`: its instances get .label, .inputs and .outputs at run time, and `compile` replaces its forward.
    """
    return type(name, (nn.Module,), {"forward": forward, "__doc__": "One region structure of a RegionalModule."})
