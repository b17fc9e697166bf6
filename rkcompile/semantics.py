"""Checks that need the whole spec: widths and resolutions along the network, budgets, mode combinations."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rkcompile.errors import CompileError
from rkcompile.exact import parse_coefficient
from rkcompile.spec import (
    Act,
    Basic,
    Bottleneck,
    Conv,
    ConvStem,
    Dropout,
    Layers,
    Linear,
    Mlp,
    NoEntry,
    Norm,
    PerEvaluation,
    Pool,
    Spec,
    Stage,
)

__all__ = ["check_spec", "Shape", "nearest_budgets"]


@dataclass(frozen=True)
class Shape:
    """The state's shape without batch: width (channels or features), and height/width for images."""

    image: bool
    width: int
    height: int = 1
    breadth: int = 1

    def strided(self, stride: int) -> Shape:
        """The shape after a 'same'-padded conv or pool with this stride (ceil division)."""
        return replace(self, height=-(-self.height // stride), breadth=-(-self.breadth // stride))


def check_spec(spec: Spec) -> None:
    """Raise a located CompileError for the first thing that cannot be compiled."""
    i = spec.input
    shape = Shape(True, i.channels, i.height, i.width) if i.is_image else Shape(False, i.features)
    if isinstance(spec.stem, ConvStem):
        if not shape.image:
            raise spec.error(("stem",), "a conv stem needs image input {channels, height, width}", CompileError)
        shape = Shape(True, spec.stem.channels, shape.height, shape.breadth).strided(spec.stem.stride)
        if spec.stem.pool is not None:
            shape = shape.strided(spec.stem.pool.stride)
    elif spec.stem is not None:
        shape = walk_layers(spec, spec.stem.layers, shape, ("stem", "layers"))
    for n, stage in enumerate(spec.stages):
        shape = _check_stage(spec, stage, shape, ("stages", n))


def _check_stage(spec: Spec, stage: Stage, shape: Shape, path: tuple) -> Shape:
    if stage.channels is not None and not shape.image:
        raise spec.error(path + ("channels",), "'channels' is for image states; this state is a vector: use 'features'",
                         CompileError)
    if stage.features is not None and shape.image:
        raise spec.error(path + ("features",), "'features' is for vector states; this state is an image: use 'channels'",
                         CompileError)
    width = stage.width or shape.width
    if isinstance(stage.entry, NoEntry):
        if width != shape.width:
            field = "channels" if shape.image else "features"
            raise spec.error(path + (field,), f"width {width} differs from the incoming {shape.width} and the stage has "
                             "no entry: add 'entry: transition' or 'entry: stitch'", CompileError)
    elif not shape.image:
        raise spec.error(path + ("entry",), f"entry '{stage.entry.kind}' needs image states", CompileError)
    else:
        if getattr(stage.entry, "shortcut", None) == "zero-pad" and width < shape.width:
            raise spec.error(path + ("entry", "shortcut"), f"a zero-pad shortcut cannot reduce the width "
                             f"{shape.width} → {width}; use 'shortcut: conv'", CompileError)
        shape = Shape(True, width, shape.height, shape.breadth).strided(stage.entry.stride)
        _check_module(spec, stage, shape, path, stride=stage.entry.stride)  # F with stride, as the entry uses it
    _check_module(spec, stage, shape, path, stride=1)
    _check_budget(spec, stage, path)
    _check_checkpoint(spec, stage, path)
    return shape


def _check_checkpoint(spec: Spec, stage: Stage, path: tuple) -> None:
    """Checkpoint groups: [first, last] block ranges inside the stage, in order and not overlapping."""
    end = -1
    for g, (first, last) in enumerate(stage.checkpoint or ()):
        where = path + ("checkpoint", g)
        if first > last:
            raise spec.error(where, f"a group is [first, last] with first <= last, found [{first}, {last}]", CompileError)
        if last >= stage.blocks:
            raise spec.error(where, f"block {last} does not exist: the stage has {stage.blocks} block"
                             f"{'s' if stage.blocks > 1 else ''} (0 to {stage.blocks - 1})", CompileError)
        if first <= end:
            raise spec.error(where, f"group [{first}, {last}] overlaps or precedes the group before it (which ends "
                             f"at block {end}); list groups in block order", CompileError)
        end = last


def _check_module(spec: Spec, stage: Stage, shape: Shape, path: tuple, stride: int) -> None:
    module, mpath = stage.module, path + ("module",)
    if isinstance(module, (Basic, Bottleneck)) and not shape.image:
        raise spec.error(mpath + ("kind",), f"module '{module.kind}' uses convolutions and needs image states; "
                         "use 'mlp' for vectors", CompileError)
    if isinstance(module, Mlp) and shape.image:
        raise spec.error(mpath + ("kind",), "module 'mlp' needs vector states; use 'basic' for images", CompileError)
    if isinstance(module, Bottleneck) and module.width is None and shape.width % module.expansion:
        raise spec.error(mpath + ("expansion",), f"width {shape.width} is not divisible by expansion "
                         f"{module.expansion}; give 'width' explicitly", CompileError)
    if isinstance(module, Layers) and stride == 1:
        out = walk_layers(spec, module.layers, shape, mpath + ("layers",), residual=True)
        if out != shape:
            raise spec.error(mpath, f"the layers map the state {_show(shape)} to {_show(out)}; a residual function "
                             "must return the shape it was given", CompileError)


def _check_budget(spec: Spec, stage: Stage, path: tuple) -> None:
    for field in ("h", "T"):
        value = getattr(stage.step, field)
        if value is not None and parse_coefficient(value) <= 0:
            raise spec.error(path + ("step", field), f"the step size must be positive, found {value}", CompileError)
    tableau = stage.tableau
    if stage.evaluations is not None and stage.evaluations % tableau.stages:
        valid = nearest_budgets(stage.evaluations, tableau.stages)
        raise spec.error(path + ("evaluations",), f"a budget of {stage.evaluations} evaluations does not divide into "
                         f"blocks of {tableau.stages} ({tableau.name} evaluates F {tableau.stages} times per step); "
                         f"nearest valid budgets: {', '.join(map(str, valid))}", CompileError)
    if stage.step.learn != "none" and not isinstance(stage.weights, PerEvaluation):
        raise spec.error(path + ("step", "learn"), f"a learnable step needs per-evaluation weights (one step size per "
                         f"block); with '{stage.weights.kind}' weights h = T/steps stays fixed", CompileError)


def nearest_budgets(evaluations: int, stages: int) -> list[int]:
    """The multiples of `stages` just below and above `evaluations` (positive ones only)."""
    low = evaluations // stages * stages
    return [v for v in (low, low + stages) if v > 0]


def walk_layers(spec: Spec, layers: list, shape: Shape, path: tuple, residual: bool = False) -> Shape:
    """Propagate a shape through a custom layer list, raising located errors for layers that do not fit.

    A conv or linear without an explicit width maps to the residual function's width (the stage's), or, in a
    stem, keeps the current width: the rule `modules.layer_list` builds with.
    """
    target = shape.width if residual else None
    for n, layer in enumerate(layers):
        where = path + (n,)
        if isinstance(layer, (Conv, Pool)) and not shape.image:
            raise spec.error(where, f"layer '{layer.kind}' needs image states; this state is a vector", CompileError)
        if isinstance(layer, Linear) and shape.image:
            raise spec.error(where, "layer 'linear' needs vector states; this state is an image", CompileError)
        if isinstance(layer, (Conv, Pool)) and layer.stride > 1 and residual:
            raise spec.error(where + ("stride",), "a residual function cannot change resolution; use a stage "
                             "'entry' to downsample", CompileError)
        if isinstance(layer, Conv):
            out = layer.channels or target or shape.width
            if shape.width % layer.groups or out % layer.groups:
                raise spec.error(where + ("groups",), f"groups {layer.groups} must divide the widths "
                                 f"{shape.width} → {out}", CompileError)
            shape = replace(shape, width=out).strided(layer.stride)
        elif isinstance(layer, Pool):
            shape = shape.strided(layer.stride)
        elif isinstance(layer, Linear):
            shape = replace(shape, width=layer.features or target or shape.width)
        elif isinstance(layer, Norm) and layer.kind == "groupnorm" and shape.width % layer.groups:
            raise spec.error(where + ("groups",), f"groupnorm groups {layer.groups} must divide the width "
                             f"{shape.width}", CompileError)
        elif isinstance(layer, (Act, Dropout, Norm)):
            pass
    return shape


def _show(shape: Shape) -> str:
    return f"{shape.width}x{shape.height}x{shape.breadth}" if shape.image else f"({shape.width},)"
