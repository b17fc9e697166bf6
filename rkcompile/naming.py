"""The names the compiler gives: module paths (`stage0.block3.eval2.conv1`) and graph-node names (`stage0_block3_k2_conv1`).

The module-path grammar, the only one in the package (every other module builds and reads paths here):

    stem | head                                       the stem and the classifier head
    stage{n}.entry(.f|.shortcut)                      a stage's transition or stitch: its F and its shortcut
    stage{n}.block{b}.eval{i}                         per-evaluation weights: F of evaluation k_i of step b
    stage{n}.block{b}.controller                      the step-size controller of one block (2-FC)
    stage{n}.block{b}                                 a block's own tensors (its learned step `h`)
    stage{n}.f                                        shared weights: one F for every evaluation of the stage
    stage{n}.piece{p}                                 basis weights: piece p of theta(t) (Queiruga et al. 2020)
    stage{n}.controller                               the stage's step-size controller (LSTM, carried over blocks)

followed by any layer and tensor names (`.conv1.weight`). Indices are decimal without leading zeros; evaluations
count from 1 (k_1 ... k_s), everything else from 0.

Ownership rule (one rule for `rkcompile build` and `rkcompile analyze`): a tensor belongs to the unit whose path it
lies under — `stem`, `head`, `stage{n}.entry` or `stage{n}.block{b}` (its evaluations' F, its controller, its h).
Shared weights, basis pieces and a stage-wide controller serve many blocks, so they belong to their stage,
`stage{n}`, and are counted once there, in no block.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rkcompile.errors import RkcompileError

__all__ = ["ModulePath", "NamingError", "STEM", "HEAD", "stage", "block", "evaluation", "shared", "piece", "entry",
           "controller", "parse", "owner", "local", "node_name", "display"]

STEM, HEAD = "stem", "head"
ENTRY_PARTS = ("f", "shortcut")


class NamingError(RkcompileError):
    """A string is not a module path of the grammar above."""


def stage(n: int) -> str:
    """`stage{n}`."""
    return f"stage{n}"


def block(n: int, b: int) -> str:
    """`stage{n}.block{b}`: one integrator step."""
    return f"stage{n}.block{b}"


def evaluation(n: int, b: int, i: int) -> str:
    """`stage{n}.block{b}.eval{i}`: the F of evaluation k_i (i from 1) of step b, per-evaluation weights."""
    return f"stage{n}.block{b}.eval{i}"


def shared(n: int) -> str:
    """`stage{n}.f`: the one F of a stage with shared weights."""
    return f"stage{n}.f"


def piece(n: int, p: int) -> str:
    """`stage{n}.piece{p}`: piece p of a stage's piecewise-constant basis theta(t)."""
    return f"stage{n}.piece{p}"


def entry(n: int, part: str | None = None) -> str:
    """`stage{n}.entry`, or its `f` or `shortcut` part."""
    if part is not None and part not in ENTRY_PARTS:
        raise NamingError(f"an entry has parts {' and '.join(ENTRY_PARTS)}, found '{part}'")
    return f"stage{n}.entry" + (f".{part}" if part else "")


def controller(n: int, b: int | None = None) -> str:
    """`stage{n}.block{b}.controller` (one per block), or `stage{n}.controller` (one per stage) when b is None."""
    return f"{block(n, b)}.controller" if b is not None else f"stage{n}.controller"


@dataclass(frozen=True)
class ModulePath:
    """A parsed module path: which unit and part it names, and the layer/tensor path below it (`rest`)."""

    kind: str  # "stem" | "head" | "stage" | "entry" | "block" | "eval" | "controller" | "shared" | "piece"
    stage: int | None = None
    block: int | None = None
    evaluation: int | None = None
    piece: int | None = None
    part: str | None = None  # an entry's "f" or "shortcut"
    rest: str = ""

    @property
    def base(self) -> str:
        """The path without `rest`."""
        if self.kind in (STEM, HEAD):
            return self.kind
        n = self.stage
        assert n is not None, "every path but stem and head lies under a stage"
        if self.kind == "stage":
            return stage(n)
        if self.kind == "entry":
            return entry(n, self.part)
        if self.kind == "shared":
            return shared(n)
        if self.kind == "controller":
            return controller(n, self.block)
        if self.kind == "piece":
            assert self.piece is not None, "a piece path has a piece index"
            return piece(n, self.piece)
        if self.kind in ("block", "eval"):
            assert self.block is not None, "block and eval paths have a block index"
            if self.kind == "block":
                return block(n, self.block)
            assert self.evaluation is not None, "an eval path has an evaluation index"
            return evaluation(n, self.block, self.evaluation)
        raise KeyError(self.kind)

    @property
    def owner(self) -> str:
        """The unit owning the tensors under this path (the ownership rule in the module docstring)."""
        if self.kind in (STEM, HEAD):
            return self.kind
        assert self.stage is not None, "every path but stem and head lies under a stage"
        if self.kind == "entry":
            return entry(self.stage)
        if self.block is not None:
            return block(self.stage, self.block)
        return stage(self.stage)

    def with_rest(self, rest: str) -> ModulePath:
        """The same unit and part with another layer/tensor path below it."""
        return ModulePath(self.kind, self.stage, self.block, self.evaluation, self.piece, self.part, rest)

    def __str__(self) -> str:
        return f"{self.base}.{self.rest}" if self.rest else self.base


@functools.lru_cache(maxsize=16384)  # a path parses the same every time; analysis and drawing ask for each many times
def parse(path: str) -> ModulePath:
    """Parse a module path of the grammar above; a NamingError names the first token that does not fit."""
    tokens = path.split(".")
    if "" in tokens:
        raise NamingError(f"'{path}' is not a module path: empty name between dots")
    head, rest = tokens[0], tokens[1:]
    if head in (STEM, HEAD):
        return ModulePath(head, rest=".".join(rest))
    n = _index(head, "stage", path)
    if not rest:
        return ModulePath("stage", n)
    first, rest = rest[0], rest[1:]
    if first == "entry":
        if rest and rest[0] in ENTRY_PARTS:
            return ModulePath("entry", n, part=rest[0], rest=".".join(rest[1:]))
        if rest:
            raise NamingError(f"'{path}' is not a module path: an entry has parts {' and '.join(ENTRY_PARTS)}, "
                              f"found '{rest[0]}'")
        return ModulePath("entry", n)
    if first == "f":
        return ModulePath("shared", n, rest=".".join(rest))
    if first == "controller":
        return ModulePath("controller", n, rest=".".join(rest))
    if first.startswith("piece"):
        return ModulePath("piece", n, piece=_index(first, "piece", path), rest=".".join(rest))
    if first.startswith("block"):
        b = _index(first, "block", path)
        if rest and rest[0].startswith("eval") and rest[0] != "eval":
            i = _index(rest[0], "eval", path)
            if i < 1:
                raise NamingError(f"'{path}' is not a module path: evaluations count from 1, found '{rest[0]}'")
            return ModulePath("eval", n, b, evaluation=i, rest=".".join(rest[1:]))
        if rest and rest[0] == "controller":
            return ModulePath("controller", n, b, rest=".".join(rest[1:]))
        return ModulePath("block", n, b, rest=".".join(rest))
    raise NamingError(f"'{path}' is not a module path: after '{head}' expected entry, block{{b}}, f, piece{{p}} "
                      f"or controller, found '{first}'")


def owner(path: str) -> str:
    """The unit owning the tensor at module path `path`: stem, head, stage{n}.entry, stage{n}.block{b} or stage{n}."""
    return parse(path).owner


def local(path: str) -> str:
    """The path below its stage (`stage0.block3.eval2` → `block3.eval2`, `stage1.piece0` → `piece0`), for labels."""
    p = parse(path)
    return str(p) if p.stage is None else str(p).removeprefix(f"{stage(p.stage)}.")


def display(label: str, names) -> str:
    """A unit label for tables and drawings: `stage{n}` replaced by stage n's `name` when it has one
    (`stage0.block3` → `body.block3`); `names` lists the stages' names (None where unnamed)."""
    head, dot, rest = label.partition(".")
    if not head.startswith("stage"):
        return label
    try:
        n = _index(head, "stage", label)
    except NamingError:
        return label
    name = names[n] if 0 <= n < len(names) else None
    return f"{name}{dot}{rest}" if name else label


def node_name(path: str, *suffix: str) -> str:
    """The graph-node name for module path `path` plus suffixes: `stage0.block3.eval2` + conv1 → `stage0_block3_k2_conv1`."""
    p = parse(path)
    words = str(p).split(".")
    if p.kind == "eval":
        words[2] = f"k{p.evaluation}"
    return "_".join([*words, *suffix])


def _index(token: str, prefix: str, path: str) -> int:
    """The decimal index of `stage12`-like tokens (no sign, no leading zeros)."""
    digits = token[len(prefix):] if token.startswith(prefix) else ""
    if not (digits.isascii() and digits.isdigit()) or (len(digits) > 1 and digits[0] == "0"):
        raise NamingError(f"'{path}' is not a module path: expected {prefix}{{index}}, found '{token}'")
    return int(digits)
