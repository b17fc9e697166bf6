"""The compiler: a validated spec → a torch.fx GraphModule, built node by node (no tracing).

Names follow the papers: `stage{n}`, `block{b}` (one integrator step), `eval{i}` (the i-th evaluation
k_i of the step), `piece{p}` (a basis piece of theta(t)), and the layer (`conv1`, `bn1`, ...). Submodule
targets read `stage0.block3.eval2.conv1`; graph nodes read `stage0_block3_k2_conv1`.
"""

from __future__ import annotations

import contextlib
import operator
import re
from pathlib import Path

import torch
from torch import fx, nn

from rkcompile import naming
from rkcompile.checkpointing import groups_of, outline_checkpoints
from rkcompile.errors import CompileError
from rkcompile.exact import parse_coefficient
from rkcompile.graphmeta import NodeMeta, Role, put
from rkcompile.graphmeta import Part as EntryPart
from rkcompile.limits import Limits, check_counts, estimate, needs_exact
from rkcompile.load import load_spec, parse_overrides
from rkcompile.lowering import StepPlan, piece_index
from rkcompile.lowering_registers import choose_lowering, lowering_function
from rkcompile.modules import SHORT_NAMES, LayerCall, Part, Scale, activation, layer_list, norm_layer, residual_function
from rkcompile.semantics import Shape, walk_layers
from rkcompile.spec import Basis, ConvStem, NoEntry, PerEvaluation, Shared, Spec, Stage, Stitch, Transition

__all__ = ["build"]


def build(spec_or_path: Spec | str | Path, overrides=None, *, limits: Limits | None = None, device=None,
          **fields) -> fx.GraphModule:
    """Compile a validated Spec or the spec file at a path to a GraphModule; `stages__0__integrator="rk4"` overrides.

    `overrides` is a mapping {dotted path: value} or a list of "path=value" strings (as `--set` takes them).
    YAML text is parsed first with `parse_spec`. `limits` raises the resource limits (`rkcompile.limits`);
    `device="meta"` builds without allocating memory (for counting).
    """
    changes = parse_overrides(overrides or {})
    changes.update({k.replace("__", "."): v for k, v in fields.items()})
    spec = load_spec(spec_or_path, changes or None, limits=limits)
    meta = torch.device("meta")
    if device is None and needs_exact(estimate(spec), limits):
        _checked(spec, meta, limits)  # close to a limit: count exactly on the meta device before allocating
    return _checked(spec, device, limits)


def _checked(spec: Spec, device, limits: Limits | None) -> fx.GraphModule:
    """Compile on `device` (the default device if None) and compare the exact counts with the limits."""
    with torch.device(device) if device is not None else contextlib.nullcontext():
        if spec.seed is None:
            module = _Compiler(spec).compile()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(spec.seed)
                module = _Compiler(spec).compile()
    check_counts(spec, sum(p.numel() for p in module.parameters()), len(module.graph.nodes), limits)
    return module


class _Compiler:
    """Holds the root module and the graph while a spec is lowered part by part."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.functions: list[str] = []  # targets of every F created, used by the graph or not

    def compile(self) -> fx.GraphModule:
        """Lower the whole spec: input, stem, stages, head; lint the graph and wrap it in a GraphModule."""
        spec, g = self.spec, self.graph
        x = g.placeholder("x")
        put(x, NodeMeta(Role.INPUT))
        i = spec.input
        shape = Shape(True, i.channels, i.height, i.width) if i.is_image else Shape(False, i.features)
        x, shape = self.stem(x, shape)
        for n, stage in enumerate(spec.stages):
            x, shape = self.stage(x, shape, stage, n)
        if spec.output is not None:
            x = self.head(x, shape)
        g.output(x)
        g.lint()
        module = fx.GraphModule(self.root, g, class_name=_class_name(spec.name))
        # GraphModule keeps only what the graph calls; a basis piece that no step samples (more pieces than
        # steps reach) is still part of theta(t): keep it, so parameters depend on the pieces alone
        for target in self.functions:
            if not _has(module, target):
                module.add_submodule(target, self.root.get_submodule(target))
        module.spec = spec
        groups = groups_of(spec)
        return outline_checkpoints(module, groups) if groups else module

    # ------------------------------------------------------------ helpers
    def attach(self, target: str, module: nn.Module) -> None:
        """Register `module` at a dotted path under the root, creating empty containers on the way."""
        parent = self.root
        *parents, last = target.split(".")
        for name in parents:
            if not hasattr(parent, name):
                parent.add_module(name, nn.Module())
            parent = getattr(parent, name)
        parent.add_module(last, module)

    def call_part(self, x: fx.Node, part: Part, target: str, name: str, meta: NodeMeta) -> fx.Node:
        """Emit one node per layer of `part` (registered at `target`), named `{name}_{layer}`."""
        for call in part.calls:
            if call.module is not None:
                x = self.graph.create_node("call_module", f"{target}.{call.name}", (x,), {}, name=f"{name}_{call.name}")
            else:
                x = self.graph.create_node("call_function", call.function, (x,), {}, name=f"{name}_{call.name}")
            put(x, meta.but(layer=call.name))
        return x

    def function(self, fn, args: tuple, name: str, meta: NodeMeta, kwargs: dict | None = None) -> fx.Node:
        """Emit a call_function node with rk metadata."""
        node = self.graph.create_node("call_function", fn, args, kwargs or {}, name=name)
        put(node, meta)
        return node

    # ------------------------------------------------------------ parts
    def stem(self, x: fx.Node, shape: Shape) -> tuple[fx.Node, Shape]:
        """Emit the stem (conv stem or custom layers) and return its output node and shape."""
        stem = self.spec.stem
        if stem is None:
            return x, shape
        if isinstance(stem, ConvStem):
            out = Shape(True, stem.channels, shape.height, shape.breadth).strided(stem.stride)
            calls = [LayerCall("conv", nn.Conv2d(shape.width, stem.channels, stem.kernel, stem.stride,
                                                 padding=stem.kernel // 2, bias=stem.bias))]
            norm = norm_layer(stem.norm, out)
            if norm is not None:
                calls.append(LayerCall(SHORT_NAMES[stem.norm], norm))
            if activation(stem.act) is not None:
                calls.append(LayerCall(stem.act.replace("-", "_"), function=activation(stem.act)))
            if stem.pool is not None:
                cls = nn.MaxPool2d if stem.pool.kind == "maxpool" else nn.AvgPool2d
                calls.append(LayerCall("pool", cls(stem.pool.kernel, stem.pool.stride, padding=stem.pool.kernel // 2)))
                out = out.strided(stem.pool.stride)
            part = Part(calls)
        else:
            part = layer_list(stem.layers, shape)
            out = walk_layers(self.spec, stem.layers, shape, ("stem", "layers"))
        self.attach(naming.STEM, part)
        return self.call_part(x, part, naming.STEM, naming.node_name(naming.STEM), NodeMeta(Role.STEM)), out

    def stage(self, x: fx.Node, shape: Shape, stage: Stage, n: int) -> tuple[fx.Node, Shape]:
        """Emit a stage: its entry unit, then one integrator step per block."""
        width = stage.width or shape.width
        if not isinstance(stage.entry, NoEntry):
            x, shape = self.entry(x, shape, stage, n, width)
        tableau, blocks = stage.tableau, stage.blocks
        learned = stage.step.learn != "none"
        plan = StepPlan(tableau, stage.h, parse_coefficient(stage.step.epsilon), learned)
        functions = self.stage_functions(stage, n, shape, tableau.stages, blocks)
        lower_step = lowering_function(self.lowering(stage, plan))
        after = activation(_after(stage.module))
        for b in range(blocks):
            base = NodeMeta(Role.EVAL, stage=n, block=b)
            name = naming.node_name(naming.block(n, b))
            scale = self.step_scale(stage, n, b, shape, name, base) if learned else None

            def evaluate(z: fx.Node, i: int, b: int = b, base: NodeMeta = base) -> fx.Node:
                target, part, p = functions(b, i)
                t = (b + tableau.c[i]) * stage.h
                meta = base.but(evaluation=i + 1, weights=target, piece=p, time=t)
                return self.call_part(z, part, target, naming.node_name(naming.evaluation(n, b, i + 1)), meta)

            x = lower_step(self.graph, x, plan, evaluate, name, base.but(role=Role.OUTPUT), scale)
            if after is not None:
                x = self.function(after, (x,), f"{name}_{_after(stage.module).replace('-', '_')}",
                                  base.but(role=Role.AFTER))
        return x, shape

    def lowering(self, stage: Stage, plan: StepPlan) -> str:
        """The stage's step lowering: as asked, or the minimal-register one where it keeps fewer activations."""
        scale = (1 if plan.learned else plan.h) * plan.epsilon
        return choose_lowering(plan.tableau, scale, stage.lowering).lowering

    def stage_functions(self, stage: Stage, n: int, shape: Shape, s: int, blocks: int):
        """Create the stage's F modules for its weight mode; return (block, eval) → (target, part, label)."""
        w = stage.weights
        if isinstance(w, PerEvaluation):
            parts = {}
            for b in range(blocks):
                for i in range(s):
                    target = naming.evaluation(n, b, i + 1)
                    parts[b, i] = (target, self._new_f(stage, shape, target), None)
            return lambda b, i: parts[b, i]
        if isinstance(w, Shared):
            target = naming.shared(n)
            shared = (target, self._new_f(stage, shape, target), None)
            return lambda b, i: shared
        if isinstance(w, Basis):
            pieces = [(naming.piece(n, p), self._new_f(stage, shape, naming.piece(n, p)), p)
                      for p in range(w.pieces)]
            c = stage.tableau.c
            return lambda b, i: pieces[piece_index(b, c[i], blocks, w.pieces)]
        raise CompileError(f"unknown weights {w!r}")  # pragma: no cover

    def _new_f(self, stage: Stage, shape: Shape, target: str) -> Part:
        self.functions.append(target)
        part = residual_function(stage.module, shape, shape.width)
        if stage.step.skip_init:  # s * F with s = 0 at init (ContinuousNet's skip-init), one s per F
            part = Part([*part.calls, LayerCall("skip", Scale(0.0))])
        self.attach(target, part)
        return part

    def step_scale(self, stage: Stage, n: int, b: int, shape: Shape, name: str, base: NodeMeta):
        """The block's learned step size times each k: a parameter h (HO-ResNet's adaptive h, TSC_indp), a frozen
        h (a buffer, as `fold_step_sizes` leaves it), or h * a controller's dt (TSC_2fc, TSC_LSTM; Yang et al. 2020)."""
        target = naming.block(n, b)
        if not _has(self.root, target):
            self.attach(target, nn.Module())
        if stage.step.controller != "none":
            from rkcompile.controllers import emit_step_size

            h = emit_step_size(self, stage, n, b, shape, name, base)
        else:
            size = (shape.width, 1, 1) if shape.image else (shape.width,)
            value = torch.full(() if stage.step.learn == "scalar" else size, float(stage.h))
            owner = self.root.get_submodule(target)
            if stage.step.frozen:
                owner.register_buffer("h", value)
            else:
                owner.register_parameter("h", nn.Parameter(value))
            h = self.graph.get_attr(f"{target}.h")
            put(h, base.but(role=Role.PARAMETER))

        def scale(k: fx.Node, i: int) -> fx.Node:
            return self.function(torch.mul, (k, h), naming.node_name(naming.evaluation(n, b, i + 1), "h"),
                                 base.but(role=Role.SCALE, evaluation=i + 1))

        return scale

    def entry(self, x: fx.Node, shape: Shape, stage: Stage, n: int, width: int) -> tuple[fx.Node, Shape]:
        """Emit a transition block (shortcut + F with stride) or a stitch (1x1 conv + epsilon R)."""
        entry, name, target = stage.entry, naming.node_name(naming.entry(n)), naming.entry(n)
        out = Shape(True, width, shape.height, shape.breadth).strided(entry.stride)
        meta = NodeMeta(Role.ENTRY, stage=n, entry=True, part=EntryPart.SHORTCUT)
        f = residual_function(stage.module, shape, width, entry.stride)
        self.attach(naming.entry(n, "f"), f)
        k = self.call_part(x, f, naming.entry(n, "f"), naming.node_name(naming.entry(n, "f")), meta.but(part=EntryPart.F))
        if isinstance(entry, Transition):
            short = self.shortcut(x, shape, out, entry, target, name, meta)
            y = self.function(torch.add, (short, k), f"{name}_add", meta.but(role=Role.OUTPUT, part=None))
            after = _after(stage.module)
            if activation(after) is not None:
                y = self.function(activation(after), (y,), f"{name}_{after.replace('-', '_')}",
                                  meta.but(role=Role.AFTER, part=None))
            return y, out
        assert isinstance(entry, Stitch)
        proj = Part([LayerCall("proj", nn.Conv2d(shape.width, width, 1, entry.stride, bias=False))])
        self.attach(naming.entry(n, "shortcut"), proj)
        short = self.call_part(x, proj, naming.entry(n, "shortcut"), naming.node_name(naming.entry(n, "shortcut")), meta)
        eps = parse_coefficient(entry.epsilon)
        kwargs = {} if eps == 1 else {"alpha": float(eps)}
        return self.function(torch.add, (short, k), f"{name}_add", meta.but(role=Role.OUTPUT, part=None), kwargs), out

    def shortcut(self, x, shape: Shape, out: Shape, entry: Transition, target: str, name: str, meta: NodeMeta):
        """The transition's shortcut: identity, zero-pad (subsample + zero channels), or 1x1 conv + norm."""
        if entry.shortcut == "conv":
            part = Part([LayerCall("conv", nn.Conv2d(shape.width, out.width, 1, entry.stride, bias=False)),
                         LayerCall("bn", nn.BatchNorm2d(out.width))])
            target = naming.entry(meta.stage, "shortcut")
            self.attach(target, part)
            return self.call_part(x, part, target, naming.node_name(target), meta)
        if entry.stride > 1:
            s = entry.stride
            every = (slice(None), slice(None), slice(None, None, s), slice(None, None, s))
            x = self.function(operator.getitem, (x, every), f"{name}_subsample", meta)  # option A: a view
        if out.width > shape.width:
            x = self.function(nn.functional.pad, (x, (0, 0, 0, 0, 0, out.width - shape.width)), f"{name}_pad", meta)
        return x

    def head(self, x: fx.Node, shape: Shape) -> fx.Node:
        """Emit global average pooling (images) and the linear classifier."""
        out = self.spec.output
        meta = NodeMeta(Role.HEAD)
        if shape.image:
            x = self.function(nn.functional.adaptive_avg_pool2d, (x, 1), "head_pool", meta)
            x = self.function(torch.flatten, (x, 1), "head_flatten", meta)
        calls = [LayerCall("dropout", nn.Dropout(out.dropout))] if out.dropout else []
        part = Part(calls + [LayerCall("fc", nn.Linear(shape.width, out.classes))])
        self.attach(naming.HEAD, part)
        return self.call_part(x, part, naming.HEAD, naming.node_name(naming.HEAD), meta)


def _after(module) -> str | None:
    """The activation after the residual addition: explicit, else relu for post-activation ResNet blocks."""
    if module.after is not None:
        return module.after
    return "relu" if getattr(module, "form", None) == "post" else None


def _has(root: nn.Module, target: str) -> bool:
    try:
        root.get_submodule(target)
        return True
    except AttributeError:
        return False


def _class_name(name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", name)
    out = "".join(w[:1].upper() + w[1:] for w in words) or "Network"
    return out if out[0].isalpha() else "Net" + out
