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


#: The kinds of state: images N x C x H x W, vectors N x F, signals N x C x L, token sequences N x L x F, and
#: token ids N x L (int64; only an embedding stem takes them, the width is the vocabulary).
STATES = ("image", "vector", "signal", "tokens", "ids")


@dataclass(frozen=True)
class Shape:
    """The state's shape without batch: width (channels or features), height/width for images, and `sequence`
    ("signal" or "tokens", with the length in `height`) for the two sequence states."""

    image: bool
    width: int
    height: int = 1
    breadth: int = 1
    sequence: str | None = None  # "signal", "tokens" or "ids"

    @property
    def state(self) -> str:
        """One of STATES."""
        return "image" if self.image else self.sequence or "vector"

    @property
    def length(self) -> int:
        """The sequence length (signals and tokens)."""
        return self.height

    @classmethod
    def signal(cls, channels: int, length: int) -> Shape:
        """A 1-d signal of `channels` x `length`."""
        return cls(False, channels, length, 1, "signal")

    @classmethod
    def tokens(cls, length: int, features: int) -> Shape:
        """A sequence of `length` tokens of `features` each."""
        return cls(False, features, length, 1, "tokens")

    def strided(self, stride: int) -> Shape:
        """The shape after subsampling every `stride`-th row and column, or sequence element (ceil division)."""
        if self.sequence:
            return replace(self, height=-(-self.height // stride))
        return replace(self, height=-(-self.height // stride), breadth=-(-self.breadth // stride))

    def windowed(self, kernel: int, stride: int) -> Shape:
        """The shape after a window of `kernel` with padding kernel // 2 (conv and pool): floor((n + 2p - k)/s) + 1."""
        pad = 2 * (kernel // 2) - kernel
        if self.sequence:
            return replace(self, height=(self.height + pad) // stride + 1)
        return replace(self, height=(self.height + pad) // stride + 1, breadth=(self.breadth + pad) // stride + 1)

    def phrase(self) -> str:
        """'an image', 'a vector', or the sequence shown: what error messages say the state is."""
        return {"image": "an image", "vector": "a vector"}.get(self.state, self.show())

    def show(self) -> str:
        """'16x8x8' for an image, '(8,)' for a vector, 'signal 4x40' (channels x length), 'tokens 16x64' (length x features)."""
        if self.sequence == "signal":
            return f"signal {self.width}x{self.height}"
        if self.sequence == "tokens":
            return f"tokens {self.height}x{self.width}"
        if self.sequence == "ids":
            return f"ids {self.height} of {self.width}"
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
        """Layers that need an image (or, for conv and pools, a 1-d signal) raise a located error elsewhere."""
        if not self.shape.image and not (self.shape.sequence == "signal" and kind in _SIGNAL_LAYERS):
            signal = " or signal" if kind in _SIGNAL_LAYERS else ""
            raise self.fail(where, f"layer '{kind}' needs image{signal} states; this state is {self.shape.phrase()}")

    def need(self, states: tuple[str, ...], what: str, where: tuple = ()) -> None:
        """A located error unless the state is one of `states` ('image', 'vector', 'signal', 'tokens')."""
        if self.shape.state not in states:
            raise self.fail(where, f"{what} needs {' or '.join(states)} states; this state is {self.shape.phrase()}")

    def conv(self, channels: int, kernel: int = 3, stride: int = 1, bias: bool = False, groups: int = 1,
             where: tuple = (), name: str | None = None) -> None:
        """A 2-d convolution (1-d on signals) with padding kernel // 2 (the size is kept for odd kernels at stride 1)."""
        self.need_image("conv", where)
        if self.shape.width % groups or channels % groups:
            raise self.fail(where + ("groups",), f"groups {groups} must divide the widths {self.shape.width} → "
                            f"{channels}")
        shape = replace(self.shape, width=channels).windowed(kernel, stride)
        self.add("conv", shape, name, kernel=kernel, stride=stride, bias=bias, groups=groups)

    def linear(self, features: int, bias: bool = True, where: tuple = (), name: str | None = None) -> None:
        """A fully connected layer on a vector state, or on each token of a sequence."""
        if self.shape.state not in ("vector", "tokens"):
            raise self.fail(where, f"layer 'linear' needs vector or tokens states; this state is {self.shape.phrase()}")
        self.add("linear", replace(self.shape, width=features), name, bias=bias)

    def norm(self, kind: str, groups: int | None = None, where: tuple = (), name: str | None = None,
             eps: float | None = None) -> None:
        """batchnorm, groupnorm (`groups` must divide the width; None: gcd(32, width)), layernorm, rmsnorm (over the
        features of vectors and tokens); 'none' adds nothing. `eps` None keeps torch's default."""
        if kind == "none":
            return
        if kind == "batchnorm" and self.shape.sequence == "tokens":
            raise self.fail(where, "batchnorm normalises channels, not tokens; use layernorm or rmsnorm on tokens")
        if kind == "rmsnorm" and self.shape.state not in ("vector", "tokens"):
            raise self.fail(where, f"rmsnorm needs vector or tokens states; this state is {self.shape.phrase()}")
        if kind == "groupnorm":
            if groups is None:
                groups = math.gcd(32, self.shape.width)
            elif self.shape.width % groups:
                raise self.fail(where + ("groups",), f"groupnorm groups {groups} must divide the width "
                                f"{self.shape.width}")
        self.add(kind, self.shape, name, groups=groups, eps=eps)

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

    def module(self, name: str, factory, shape: Shape, label: str | None = None, inline: bool = False) -> None:
        """Any nn.Module: `factory(shape_in, shape_out)` builds it at compile time; `shape` is what it returns.
        `inline`: the compiler copies its traced forward into the graph, one node per operation (`inlining`)."""
        self.add("module", shape, name, label, factory=factory, inline=inline)

    def function(self, name: str, function: str, shape: Shape, label: str | None = None, **args) -> None:
        """A parameter-free layer from `modules`' table of functions (`function` names it) returning `shape`."""
        self.add("function", shape, name, label, function=function, **args)

    def result(self) -> PartPlan:
        """The planned part."""
        return PartPlan(tuple(self.ops), self.start, self.shape)


_SIGNAL_LAYERS = ("conv", "maxpool", "avgpool")
