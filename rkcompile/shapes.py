"""The one shape rule: parts of the network planned layer by layer, symbolically (no torch), with their shapes.

Every builder (residual functions, entries, stems, heads) describes its part with a `Planner`; `check` plans the
whole network this way, and the compiler turns the very same plans into torch layers (`modules.build_part`),
so a spec that plans is a spec whose forward runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

__all__ = ["Shape", "Op", "PartPlan", "Planner", "PlanError", "SHORT_NAMES"]

#: Layer names in the generated code: conv1, bn1, fc1, ... (activations keep their own name).
SHORT_NAMES = {"batchnorm": "bn", "groupnorm": "gn", "layernorm": "ln", "linear": "fc"}


class PlanError(ValueError):
    """A part that cannot be built on the state it is given; `path` locates it relative to the validated model.

    `compile` tells a spec that cannot be compiled (a CompileError) from a malformed one (a SpecError).
    """

    def __init__(self, message: str, path: tuple = (), compile: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.path = tuple(path)
        self.compile = compile


@dataclass(frozen=True)
class Shape:
    """The state's shape without batch: width (channels or features), and height/width for images."""

    image: bool
    width: int
    height: int = 1
    breadth: int = 1

    def strided(self, stride: int) -> Shape:
        """The shape after subsampling every `stride`-th row and column (ceil division)."""
        return replace(self, height=-(-self.height // stride), breadth=-(-self.breadth // stride))

    def windowed(self, kernel: int, stride: int) -> Shape:
        """The shape after a kernel x kernel window with padding kernel // 2 (conv and pool): floor((n + 2p - k)/s) + 1."""
        pad = 2 * (kernel // 2) - kernel
        return replace(self, height=(self.height + pad) // stride + 1, breadth=(self.breadth + pad) // stride + 1)

    def show(self) -> str:
        """'16x8x8' for an image state, '(8,)' for a vector."""
        return f"{self.width}x{self.height}x{self.breadth}" if self.image else f"({self.width},)"


@dataclass(frozen=True)
class Op:
    """One layer of a planned part: its name in the code, its primitive kind, arguments and shapes."""

    name: str
    kind: str  # conv | linear | batchnorm | groupnorm | layernorm | act | dropout | maxpool | avgpool | function | module
    shape_in: Shape
    shape: Shape
    args: tuple = ()
    label: str | None = None  # what a drawing calls it, when not the name

    def arg(self, key: str) -> object:
        """One argument by name."""
        return dict(self.args)[key]


@dataclass(frozen=True)
class PartPlan:
    """A planned part: its layers in order, the shape it takes and the shape it returns."""

    ops: tuple[Op, ...]
    shape_in: Shape
    shape: Shape


@dataclass
class Planner:
    """Plans one part layer by layer; each method checks that its layer fits the current shape and updates it."""

    shape: Shape
    path: tuple = ()
    numbered: bool = True  # conv1, bn1, ... (residual functions); False: conv, bn (stems, shortcuts)
    ops: list[Op] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start = self.shape

    def fail(self, where: tuple, message: str) -> PlanError:
        """A located error at `where` below this part's path."""
        return PlanError(message, self.path + tuple(where))

    def _name(self, kind: str, name: str | None) -> str:
        if name is not None:
            return name
        short = SHORT_NAMES.get(kind, kind.replace("-", "_"))
        if not self.numbered:
            return short
        self._counts[short] = self._counts.get(short, 0) + 1
        return f"{short}{self._counts[short]}"

    def add(self, kind: str, shape: Shape, name: str | None = None, label: str | None = None, **args) -> Op:
        """Append a layer of primitive `kind` returning `shape` (the methods below call this)."""
        op = Op(self._name(kind, name), kind, self.shape, shape, tuple(args.items()), label)
        self.ops.append(op)
        self.shape = shape
        return op

    def need_image(self, kind: str, where: tuple) -> None:
        """Layers that need an image state raise a located error on a vector."""
        if not self.shape.image:
            raise self.fail(where, f"layer '{kind}' needs image states; this state is a vector")

    def conv(self, channels: int, kernel: int = 3, stride: int = 1, bias: bool = False, groups: int = 1,
             where: tuple = (), name: str | None = None) -> None:
        """A 2-d convolution with padding kernel // 2 (the resolution is kept for odd kernels at stride 1)."""
        self.need_image("conv", where)
        if self.shape.width % groups or channels % groups:
            raise self.fail(where + ("groups",), f"groups {groups} must divide the widths {self.shape.width} → "
                            f"{channels}")
        shape = replace(self.shape, width=channels).windowed(kernel, stride)
        self.add("conv", shape, name, kernel=kernel, stride=stride, bias=bias, groups=groups)

    def linear(self, features: int, bias: bool = True, where: tuple = (), name: str | None = None) -> None:
        """A fully connected layer on a vector state."""
        if self.shape.image:
            raise self.fail(where, "layer 'linear' needs vector states; this state is an image")
        self.add("linear", Shape(False, features), name, bias=bias)

    def norm(self, kind: str, groups: int | None = None, where: tuple = (), name: str | None = None) -> None:
        """batchnorm, groupnorm (`groups` must divide the width; None: gcd(32, width)), layernorm; 'none' adds nothing."""
        if kind == "none":
            return
        if kind == "groupnorm":
            if groups is None:
                groups = math.gcd(32, self.shape.width)
            elif self.shape.width % groups:
                raise self.fail(where + ("groups",), f"groupnorm groups {groups} must divide the width "
                                f"{self.shape.width}")
        self.add(kind, self.shape, name, groups=groups)

    def act(self, kind: str | None, name: str | None = None) -> None:
        """A pointwise activation; identity, none and None add nothing."""
        if kind not in (None, "identity", "none"):
            self.add("act", self.shape, self._name(kind, name), function=kind)

    def dropout(self, p: float, name: str | None = None) -> None:
        """Dropout with probability p."""
        self.add("dropout", self.shape, name, p=p)

    def pool(self, kind: str, kernel: int = 3, stride: int = 2, where: tuple = (), name: str | None = None) -> None:
        """Max or average pooling with padding kernel // 2."""
        self.need_image(kind, where)
        self.add(kind, self.shape.windowed(kernel, stride), name, kernel=kernel, stride=stride)

    def module(self, name: str, factory, shape: Shape, label: str | None = None) -> None:
        """Any nn.Module: `factory(shape_in, shape_out)` builds it at compile time; `shape` is what it returns."""
        self.add("module", shape, name, label, factory=factory)

    def result(self) -> PartPlan:
        """The planned part."""
        return PartPlan(tuple(self.ops), self.start, self.shape)
