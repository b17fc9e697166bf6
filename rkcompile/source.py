"""YAML text → plain Python data, with the line and column of every node kept for error messages."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rkcompile.errors import SpecError
from rkcompile.files import FileError, read_bytes

__all__ = ["Source", "read_source", "parse_yaml", "parse_value", "format_path"]

MAX_BYTES = 1_000_000  # a spec is a page of text; a megabyte is already absurd
MAX_NODES = 100_000  # bounds alias expansion ("billion laughs") as well as plain size
MAX_DEPTH = 64
_MAX_FLOW = 8 * MAX_DEPTH  # brackets beyond this are refused unparsed; up to it, the converter locates the error
_MAX_DIGITS = 100  # far beyond any count or seed; a 4300-digit integer is a typo or an attack


@dataclass
class Source:
    """Parsed YAML data plus where each node came from (path tuple → 1-based line, column)."""

    data: object
    file: str
    text: str
    positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    #: the path each override set (`--set stages.0.integrator=rk5`) → how the user wrote it, for locating errors
    overridden: dict[tuple, str] = field(default_factory=dict)

    def locate(self, path: tuple) -> tuple[int | None, int | None]:
        """Line and column of the deepest existing node on `path` (the document start if none)."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.positions:
                return self.positions[path[:n]]
        return (None, None)

    def error(self, path: tuple, message: str, cls: type[SpecError] = SpecError) -> SpecError:
        """A SpecError located at the YAML node for `path`, or at the override that set it (`--set PATH=VALUE: ...`)."""
        for where, text in sorted(self.overridden.items(), key=lambda item: -len(item[0])):
            if path[:len(where)] == where:  # the node, or something inside it, came from this override
                return cls(message, file=text, path=format_path(path))
        line, column = self.locate(path)
        return cls(message, file=self.file, line=line, column=column, path=format_path(path))


def format_path(path: tuple) -> str:
    """Render ('stages', 1, 'module', 'kind') as 'stages[1].module.kind' (odd keys are quoted)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = str(part) if _PLAIN_KEY.fullmatch(str(part)) else repr(str(part))
            out += f".{name}" if out else name
    return out


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")


def read_source(path: str | Path, *, file: str | None = None) -> Source:
    """Read and parse the spec file at `path` (always a path, never YAML text: see `parse_yaml` for text)."""
    if not isinstance(path, (str, Path)):
        raise SpecError(f"expected a path to a spec file, found {type(path).__name__}", file=file or "<spec>")
    name = file or str(path)
    if "\n" in str(path):
        raise SpecError("no such file (a path, not YAML text: parse text with rkcompile.parse_spec)",
                        file=f"{str(path)[:30]!r}...")
    try:
        raw = read_bytes(path, limit=MAX_BYTES, what="YAML file")
    except FileError as e:
        reason = e.reason.replace(f"larger than {MAX_BYTES:,} bytes", f"spec is larger than {MAX_BYTES} bytes")
        if reason.startswith("[Errno"):
            reason = f"cannot read: {reason.split('] ', 1)[-1]}"
        raise SpecError(reason, file=name if "\0" not in name else repr(name)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=name) from None
    return parse_yaml(text, name)


def parse_yaml(text: str, file: str = "<spec>") -> Source:
    """Parse YAML text with the safe loader's composer and convert it node by node."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise SpecError(f"not valid Unicode text ({e.reason} at character {e.start})", file=file) from None
    if size > MAX_BYTES:
        raise SpecError(f"spec is larger than {MAX_BYTES} bytes", file=file)
    if flow_depth(text) > _MAX_FLOW:  # refused before PyYAML recurses once per level (below, located)
        raise SpecError(f"nesting deeper than {MAX_DEPTH} levels", file=file)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise yaml_error(e, text, file) from None
    except RecursionError:
        raise SpecError(f"nesting deeper than {MAX_DEPTH} levels", file=file) from None
    source = Source(data=None, file=file, text=text)
    if node is None:
        raise SpecError("empty spec: expected a mapping with 'name' and 'stages'", file=file, line=1, column=1)
    source.data = _Converter(source).convert(node, ())
    return source


def flow_depth(text: str) -> int:
    """The deepest nesting of flow brackets `[`/`{` (an upper bound: brackets inside quotes count too)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return deepest


def parse_value(text: str, file: str = "--set", path: tuple = ()) -> object:
    """Parse one YAML value (an override) with the same bounds as a spec file; an empty text is ''."""
    if not text.strip():
        return ""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise SpecError(f"not valid Unicode text ({e.reason} at character {e.start})", file=file,
                        path=format_path(path)) from None
    if size > MAX_BYTES:
        raise SpecError(f"value is larger than {MAX_BYTES} bytes", file=file, path=format_path(path))
    if flow_depth(text) > _MAX_FLOW:
        raise SpecError(f"value nested deeper than {MAX_DEPTH} levels", file=file, path=format_path(path))
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return text  # not YAML: the text itself, as a string
    except RecursionError:
        raise SpecError(f"value nested deeper than {MAX_DEPTH} levels", file=file, path=format_path(path)) from None
    if node is None:
        return None
    source = Source(data=None, file=file, text=text)
    converter = _Converter(source)
    return converter.convert(node, path)


def yaml_error(e: yaml.YAMLError, text: str, file: str, path: tuple = ()) -> SpecError:
    """Turn a PyYAML error into a located one-line SpecError (its problem, not its multi-line rendering)."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        what = e.problem or e.context or "malformed YAML"
    elif isinstance(e, yaml.reader.ReaderError):
        before = text[: e.position]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)
        what = f"unacceptable character #x{code:04x}: special characters are not allowed"
    else:
        line, col, what = None, None, str(e).splitlines()[0]
    return SpecError(f"invalid YAML: {what}", file=file, line=line, column=col, path=format_path(path))


class _Converter:
    """Turns a composed YAML node graph into dicts/lists/scalars, recording positions and enforcing bounds."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.count = 0
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used
        self.own_keys: dict[int, set[int]] = {}

    def convert(self, node: yaml.Node, path: tuple) -> object:
        """Convert one node (recursively), recording its position and enforcing the size and depth bounds."""
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
        # flatten_mapping rewrites the node in place, and an aliased node is visited again: remember its own keys
        own = self.own_keys.setdefault(id(node), {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"})
        try:
            self.constructor.flatten_mapping(node)  # resolves `<<` merge keys the way the safe loader does
        except yaml.YAMLError as e:
            raise yaml_error(e, self.source.text, self.source.file, path) from None
        out: dict = {}
        from_merge: set[str] = set()
        for key_node, value_node in node.value:
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else key_node
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                found = {yaml.SequenceNode: "a list", yaml.MappingNode: "a mapping"}.get(type(key), type(key).__name__)
                raise SpecError(
                    f"mapping keys must be plain strings, found {found}",
                    file=self.source.file, line=line, column=col, path=format_path(path),
                )
            key = str(key)
            merged = id(key_node) not in own  # flatten_mapping lists merged pairs first, then the mapping's own
            if key in out and (merged or key in from_merge):
                from_merge.discard(key)  # a later pair overrides a merged one, as PyYAML's loader does
                del out[key]
            if merged:
                from_merge.add(key)
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
            raise yaml_error(e, self.source.text, self.source.file, path) from None
        except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
            raise self.source.error(path, f"number with more than {_MAX_DIGITS} digits is not allowed") from None
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**_MAX_DIGITS:
            raise self.source.error(path, f"number with more than {_MAX_DIGITS} digits is not allowed")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.source.error(path, f"non-finite number '{node.value}' is not allowed")
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise self.source.error(path, f"unsupported YAML value of type {type(value).__name__}")
        return value
