"""The compiler: a validated spec → a torch.fx GraphModule, built node by node (no tracing).

Names follow the papers: `stage{n}`, `block{b}` (one integrator step), `eval{i}` (the i-th evaluation
k_i of the step), `piece{p}` (a basis piece of theta(t)), and the layer (`conv1`, `bn1`, ...). Submodule
targets read `stage0.block3.eval2.conv1`; graph nodes read `stage0_block3_k2_conv1`.
"""

from __future__ import annotations

import operator
import re
from pathlib import Path

import torch
from torch import fx, nn

from rkcompile.checkpointing import groups_of, outline_checkpoints
from rkcompile.errors import CompileError
from rkcompile.exact import parse_coefficient
from rkcompile.load import load_spec, parse_overrides
from rkcompile.lowering import StepPlan, piece_index
from rkcompile.lowering_registers import choose_lowering, lowering_function
from rkcompile.modules import SHORT_NAMES, LayerCall, Part, Scale, activation, layer_list, norm_layer, residual_function
from rkcompile.semantics import Shape, walk_layers
from rkcompile.spec import Basis, ConvStem, NoEntry, PerEvaluation, Shared, Spec, Stage, Stitch, Transition

__all__ = ["build"]


def build(spec_or_path: Spec | str | Path, overrides=None, **fields) -> fx.GraphModule:
    """Compile a spec (object, path or YAML text) to a GraphModule; `stages__0__integrator="rk4"` overrides a field.

    `overrides` is a mapping {dotted path: value} or a list of "path=value" strings (as `--set` takes them).
    """
    changes = parse_overrides(overrides or {})
    changes.update({k.replace("__", "."): v for k, v in fields.items()})
    spec = load_spec(spec_or_path, changes or None)
    if spec.seed is None:
        return _Compiler(spec).compile()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return _Compiler(spec).compile()


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
        x.meta["rk"] = {"role": "input"}
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

    def call_part(self, x: fx.Node, part: Part, target: str, name: str, meta: dict) -> fx.Node:
        """Emit one node per layer of `part` (registered at `target`), named `{name}_{layer}`."""
        for call in part.calls:
            if call.module is not None:
                x = self.graph.create_node("call_module", f"{target}.{call.name}", (x,), {}, name=f"{name}_{call.name}")
            else:
                x = self.graph.create_node("call_function", call.function, (x,), {}, name=f"{name}_{call.name}")
            x.meta["rk"] = dict(meta, layer=call.name)
        return x

    def function(self, fn, args: tuple, name: str, meta: dict, kwargs: dict | None = None) -> fx.Node:
        """Emit a call_function node with rk metadata."""
        node = self.graph.create_node("call_function", fn, args, kwargs or {}, name=name)
        node.meta["rk"] = meta
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
        self.attach("stem", part)
        return self.call_part(x, part, "stem", "stem", {"role": "stem", "stage": None}), out

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
            base = {"role": "eval", "stage": n, "block": b}
            name = f"stage{n}_block{b}"
            scale = self.step_scale(stage, n, b, shape, name, base) if learned else None

            def evaluate(z: fx.Node, i: int, b: int = b, name: str = name, base: dict = base) -> fx.Node:
                target, part, label = functions(b, i)
                t = (b + tableau.c[i]) * stage.h
                meta = dict(base, eval=i + 1, weights=label, time=t)
                return self.call_part(z, part, target, f"{name}_k{i + 1}", meta)

            x = lower_step(self.graph, x, plan, evaluate, name, dict(base, role="output"), scale)
            if after is not None:
                x = self.function(after, (x,), f"{name}_{_after(stage.module).replace('-', '_')}",
                                  dict(base, role="after"))
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
                    target = f"stage{n}.block{b}.eval{i + 1}"
                    parts[b, i] = (target, self._new_f(stage, shape, target), f"block{b}.eval{i + 1}")
            return lambda b, i: parts[b, i]
        if isinstance(w, Shared):
            target = f"stage{n}.f"
            shared = (target, self._new_f(stage, shape, target), "f")
            return lambda b, i: shared
        if isinstance(w, Basis):
            pieces = [(f"stage{n}.piece{p}", self._new_f(stage, shape, f"stage{n}.piece{p}"), f"piece{p}")
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

    def step_scale(self, stage: Stage, n: int, b: int, shape: Shape, name: str, base: dict):
        """The block's learned step size times each k: a parameter h (HO-ResNet's adaptive h, TSC_indp), a frozen
        h (a buffer, as `fold_step_sizes` leaves it), or h * a controller's dt (TSC_2fc, TSC_LSTM; Yang et al. 2020)."""
        target = f"stage{n}.block{b}"
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
            h.meta["rk"] = dict(base, role="parameter")

        def scale(k: fx.Node, i: int) -> fx.Node:
            return self.function(torch.mul, (k, h), f"{name}_k{i + 1}_h", dict(base, role="scale", eval=i + 1))

        return scale

    def entry(self, x: fx.Node, shape: Shape, stage: Stage, n: int, width: int) -> tuple[fx.Node, Shape]:
        """Emit a transition block (shortcut + F with stride) or a stitch (1x1 conv + epsilon R)."""
        entry, name, target = stage.entry, f"stage{n}_entry", f"stage{n}.entry"
        out = Shape(True, width, shape.height, shape.breadth).strided(entry.stride)
        meta = {"role": "entry", "stage": n, "block": "entry"}
        f = residual_function(stage.module, shape, width, entry.stride)
        self.attach(f"{target}.f", f)
        k = self.call_part(x, f, f"{target}.f", f"{name}_f", meta)
        if isinstance(entry, Transition):
            short = self.shortcut(x, shape, out, entry, target, name, meta)
            y = self.function(torch.add, (short, k), f"{name}_add", dict(meta, role="output"))
            after = _after(stage.module)
            if activation(after) is not None:
                y = self.function(activation(after), (y,), f"{name}_{after.replace('-', '_')}", meta)
            return y, out
        assert isinstance(entry, Stitch)
        proj = Part([LayerCall("proj", nn.Conv2d(shape.width, width, 1, entry.stride, bias=False))])
        self.attach(f"{target}.shortcut", proj)
        short = self.call_part(x, proj, f"{target}.shortcut", f"{name}_shortcut", meta)
        eps = parse_coefficient(entry.epsilon)
        kwargs = {} if eps == 1 else {"alpha": float(eps)}
        return self.function(torch.add, (short, k), f"{name}_add", dict(meta, role="output"), kwargs), out

    def shortcut(self, x, shape: Shape, out: Shape, entry: Transition, target: str, name: str, meta: dict):
        """The transition's shortcut: identity, zero-pad (subsample + zero channels), or 1x1 conv + norm."""
        if entry.shortcut == "conv":
            part = Part([LayerCall("conv", nn.Conv2d(shape.width, out.width, 1, entry.stride, bias=False)),
                         LayerCall("bn", nn.BatchNorm2d(out.width))])
            self.attach(f"{target}.shortcut", part)
            return self.call_part(x, part, f"{target}.shortcut", f"{name}_shortcut", meta)
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
        meta = {"role": "head", "stage": None}
        if shape.image:
            x = self.function(nn.functional.adaptive_avg_pool2d, (x, 1), "head_pool", meta)
            x = self.function(torch.flatten, (x, 1), "head_flatten", meta)
        calls = [LayerCall("dropout", nn.Dropout(out.dropout))] if out.dropout else []
        part = Part(calls + [LayerCall("fc", nn.Linear(shape.width, out.classes))])
        self.attach("head", part)
        return self.call_part(x, part, "head", "head", meta)


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
