"""YAML text → plain Python data, with the line and column of every node kept for error messages."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rkcompile.errors import SpecError

__all__ = ["Source", "read_source", "format_path"]

MAX_BYTES = 1_000_000  # a spec is a page of text; a megabyte is already absurd
MAX_NODES = 100_000  # bounds alias expansion ("billion laughs") as well as plain size
MAX_DEPTH = 64


@dataclass
class Source:
    """Parsed YAML data plus where each node came from (path tuple → 1-based line, column)."""

    data: object
    file: str
    text: str
    positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: tuple) -> tuple[int | None, int | None]:
        """Line and column of the deepest existing node on `path` (the document start if none)."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.positions:
                return self.positions[path[:n]]
        return (None, None)

    def error(self, path: tuple, message: str) -> SpecError:
        """A SpecError located at the YAML node for `path`."""
        line, column = self.locate(path)
        return SpecError(message, file=self.file, line=line, column=column, path=format_path(path))


def format_path(path: tuple) -> str:
    """Render ('stages', 1, 'module', 'kind') as 'stages[1].module.kind'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_source(path_or_text: str | Path, *, file: str | None = None) -> Source:
    """Read a spec from a path or from YAML text (text is recognised by containing a newline or ':')."""
    if isinstance(path_or_text, Path) or (
        isinstance(path_or_text, str) and "\n" not in path_or_text and ":" not in path_or_text
    ):
        p = Path(path_or_text)
        name = file or str(p)
        try:
            if p.stat().st_size > MAX_BYTES:
                raise SpecError(f"spec is larger than {MAX_BYTES} bytes", file=name)
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError("no such file", file=name) from None
        except IsADirectoryError:
            raise SpecError("is a directory, expected a YAML file", file=name) from None
        except UnicodeDecodeError as e:
            raise SpecError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=name) from None
        except OSError as e:
            raise SpecError(f"cannot read: {e.strerror}", file=name) from None
    else:
        text, name = str(path_or_text), file or "<spec>"
    return parse_yaml(text, name)


def parse_yaml(text: str, file: str = "<spec>") -> Source:
    """Parse YAML text with the safe loader's composer and convert it node by node."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise SpecError(f"spec is larger than {MAX_BYTES} bytes", file=file)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise SpecError(f"invalid YAML: {e.problem or e.context}", file=file, line=line, column=col) from None
    except yaml.YAMLError as e:
        raise SpecError(f"invalid YAML: {e}", file=file) from None
    source = Source(data=None, file=file, text=text)
    if node is None:
        raise SpecError("empty spec: expected a mapping with 'name' and 'stages'", file=file, line=1, column=1)
    source.data = _Converter(source).convert(node, ())
    return source


class _Converter:
    """Turns a composed YAML node graph into dicts/lists/scalars, recording positions and enforcing bounds."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.count = 0
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def convert(self, node: yaml.Node, path: tuple) -> object:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.source.error(path, f"spec expands to more than {MAX_NODES} nodes (aliases nested too deep?)")
        if len(path) > MAX_DEPTH:
            raise self.source.error(path, f"nesting deeper than {MAX_DEPTH} levels")
        self.source.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: tuple) -> dict:
        self.constructor.flatten_mapping(node)  # resolves `<<` merge keys the way the safe loader does
        out: dict = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise SpecError(
                    f"mapping keys must be plain strings, found {type(key).__name__}",
                    file=self.source.file, line=line, column=col, path=format_path(path),
                )
            key = str(key)
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                first = self.source.positions[path + (key,)][0]
                raise SpecError(
                    f"duplicate key '{key}' (first given on line {first})",
                    file=self.source.file, line=line, column=col, path=format_path(path + (key,)),
                )
            self.source.positions[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.convert(value_node, path + (key,))
        return out

    def _scalar(self, node: yaml.Node, path: tuple) -> object:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise self.source.error(path, f"invalid value: {e}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.source.error(path, f"non-finite number '{node.value}' is not allowed")
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise self.source.error(path, f"unsupported YAML value of type {type(value).__name__}")
        return value
