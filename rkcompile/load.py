"""Spec loading: YAML source → overrides → Pydantic validation → semantic checks, every error located."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pydantic
from pydantic_core import ErrorDetails

from rkcompile.catalog import resolve
from rkcompile.cautions import warn
from rkcompile.errors import CompileError, SpecError, did_you_mean
from rkcompile.limits import Limits, check_bounds
from rkcompile.shapes import PlanError
from rkcompile.source import Source, format_path, parse_value, parse_yaml, read_source
from rkcompile.spec import Spec, _Model

__all__ = ["load_spec", "parse_spec", "parse_overrides"]


def load_spec(
    path: str | Path | Spec,
    overrides: Mapping[str, object] | Iterable[str] | None = None,
    *,
    file: str | None = None,
    limits: Limits | None = None,
) -> Spec:
    """Load and validate the spec file at `path` (a str is always a path; YAML text goes to `parse_spec`)."""
    if isinstance(path, Spec):
        if not overrides:
            check_bounds(path, limits)
            return path
        source = copy.deepcopy(path._source) if path._source else Source(data=path.data, file=file or "<spec>", text="")
        # a Spec changed by overrides: the library's own variants (Euler manifestations, transformations), which
        # warn for themselves (`cautions`), so no warning here
        return _validate(source, overrides, limits)
    source = read_source(resolve(path), file=file)  # a shipped spec's name → its file
    spec = _validate(source, overrides, limits)
    warn(spec)  # a spec read from a file: its cautions, located there or at the --set that caused them
    return spec


def parse_spec(
    text: str,
    overrides: Mapping[str, object] | Iterable[str] | None = None,
    *,
    file: str = "<spec>",
    limits: Limits | None = None,
) -> Spec:
    """Validate a spec given as YAML text; `file` names it in error messages."""
    if not isinstance(text, str):
        raise SpecError(f"expected YAML text, found {type(text).__name__}", file=file)
    spec = _validate(parse_yaml(text, file), overrides, limits)
    warn(spec)
    return spec


def _validate(source: Source, overrides, limits: Limits | None) -> Spec:
    """Overrides → Pydantic → semantic checks → the arithmetic resource bound, every error located."""
    if overrides:
        source.data = apply_overrides(source, parse_overrides(overrides), _override_texts(overrides))
    if not isinstance(source.data, dict):
        raise source.error((), f"a spec is a mapping with 'name' and 'stages', found {_kind_of(source.data)}")
    try:
        spec = Spec.model_validate(source.data)
    except pydantic.ValidationError as e:
        raise _located(e, source) from None
    spec._source = source
    check_bounds(spec, limits)
    return spec


def parse_overrides(overrides: Mapping[str, object] | Iterable[str]) -> dict[str, object]:
    """Turn ['stages.0.integrator=rk4', ...] (values read as YAML) or a mapping into {dotted path: value}."""
    if isinstance(overrides, Mapping):
        return dict(overrides)
    out: dict[str, object] = {}
    for item in overrides:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise SpecError(f"expected PATH=VALUE (e.g. stages.0.integrator=rk4), found '{item}'", file="--set")
        out[key.strip()] = parse_value(text, "--set", (key.strip(),))
    return out


def _override_texts(overrides: Mapping[str, object] | Iterable[str]) -> dict[str, str]:
    """{dotted path: how the user wrote the override}: `--set PATH=VALUE`, or `overrides[PATH]=VALUE` from Python."""
    if isinstance(overrides, Mapping):
        return {str(k): f"overrides[{str(k)!r}]={v!r}" for k, v in overrides.items()}
    return {str(item).partition("=")[0].strip(): f"--set {item}" for item in overrides}


def apply_overrides(source: Source, overrides: Mapping[str, object], texts: Mapping[str, str] | None = None) -> object:
    """Return a copy of the source data with each dotted path set (a None value deletes the key); each set path is
    recorded in `source.overridden`, so that errors there are located at the override (`texts`: how it was written)."""
    data = copy.deepcopy(source.data)
    for dotted, value in overrides.items():
        parts = [int(p) if p.lstrip("-").isdigit() else p for p in dotted.replace("[", ".").replace("]", "").split(".")]
        node = data
        path: tuple[int | str, ...] = ()
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
                part = part % len(node)  # stages.-1 is the last stage: record its real index
                if last:
                    node[part] = value
                else:
                    node = node[part]
            elif isinstance(node, dict) and isinstance(part, str):
                if last:
                    if value is None:
                        node.pop(part, None)
                    else:
                        node[part] = value
                elif part in node:
                    node = node[part]
                else:
                    raise SpecError(f"no field '{part}' here{did_you_mean(part, node)}", file="--set",
                                    path=format_path(path + (part,)))
            else:
                what = f"index {part} out of range (length {len(node)})" if isinstance(node, list) else (
                    f"cannot index {_kind_of(node)} with '{part}'")
                raise SpecError(what, file="--set", path=format_path(path + (part,)))
            path += (part,)
        source.overridden[path] = (texts or {}).get(dotted, f"--set {dotted}={value}")
    return data


def _kind_of(value: object) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


# ---------------------------------------------------------------- pydantic errors → located errors
_MEMBER_MISMATCH = {"string_type", "model_type", "dict_type", "model_attributes_type", "is_instance_of", "list_type"}


def _located(error: pydantic.ValidationError, source: Source) -> SpecError:
    """Pick the most specific validation error and locate it in the YAML source."""
    errors = error.errors(include_url=False)
    # "input should be a valid string" for the str member of `integrator: str | InlineTableau` says nothing
    # when the user wrote a mapping: drop mismatches that stop at a union member, keep the member's own errors
    specific = [e for e in errors if not (e["type"] in _MEMBER_MISMATCH and _is_member_label(e["loc"][-1]))] or errors
    # a misspelt key usually also makes a required one "missing": report the typo, it is the cause
    first = min(specific, key=lambda e: e["type"] == "missing")
    path = _data_path(first["loc"], source.data)
    planned = first.get("ctx", {}).get("error")
    if isinstance(planned, PlanError):  # a semantic check: its path is relative to the model that raised it
        path = _existing(source.data, path + planned.path)
        cls = CompileError if planned.compile else SpecError
        extra = f" (and {len(specific) - 1} more error{'s' if len(specific) > 2 else ''})" if len(specific) > 1 else ""
        return source.error(path, planned.message + extra, cls)
    if first["type"] in ("union_tag_invalid", "union_tag_not_found") and isinstance(_get(source.data, path), dict):
        path += ("kind",)
    message = _message(first, _get(source.data, path[:-1]), path)
    if len(specific) > 1:
        message += f" (and {len(specific) - 1} more error{'s' if len(specific) > 2 else ''})"
    return source.error(path, message)


def _existing(data: object, path: tuple) -> tuple:
    """The longest prefix of `path` present in the data (`weights: share` has no `kind` key to point at)."""
    out: tuple = ()
    for part in path:
        if isinstance(data, dict) and part in data or isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
            out += (part,)
        else:
            break
    return out


def _get(data: Any, path: tuple) -> object:  # data: the YAML's nested mappings and lists
    for part in path:
        data = data[part]
    return data


def _data_path(loc: tuple, data: object) -> tuple:
    """Map a Pydantic loc onto the data, skipping union-member labels (e.g. the 'basic' in module.basic.x)."""
    path: tuple = ()
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif _is_member_label(part):
            continue
        elif i == len(loc) - 1:
            return path + (part,)  # a missing or extra field: locate at its parent
        else:
            continue
        path += (part,)
    return path


def _is_member_label(part: object) -> bool:
    """Pydantic names union members in locs: 'str', 'InlineTableau', 'function-after[...]', or a kind tag."""
    return isinstance(part, str) and (
        "[" in part or part in ("str", "int", "float", "list", "dict") or (len(part) > 1 and part[0].isupper())
    )


def _message(err: ErrorDetails, parent: object, path: tuple) -> str:
    kind, msg, ctx = err["type"], err["msg"], err.get("ctx", {})
    if kind == "extra_forbidden":
        field = path[-1] if path else "?"
        return f"unknown field '{field}'{did_you_mean(field, _fields_for(parent, field))}"
    if kind == "missing":
        return f"missing required field '{err['loc'][-1]}'"
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        tag = ctx.get("tag")
        return f"unknown kind '{tag}'{did_you_mean(tag, tags)}; expected one of {', '.join(tags)}"
    if kind == "union_tag_not_found":
        return "missing 'kind'"
    if kind == "literal_error":
        expected = [t.strip(" '") for t in str(ctx.get("expected", "")).replace(" or ", ",").split(",")]
        found = err.get("input")
        shown = repr(found) if isinstance(found, str) else f"'{found}'"
        return f"unknown value {shown}{did_you_mean(found, expected)}; expected one of {', '.join(expected)}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    found = err.get("input")
    plain = _plain_bound(kind, ctx, found)
    if plain:
        return plain
    shown = "a mapping" if isinstance(found, dict) else "a list" if isinstance(found, list) else repr(found)
    return f"{msg[0].lower()}{msg[1:]}, found {shown}"


def _plain_bound(kind: str, ctx: dict, found: object) -> str | None:
    """Length and range errors in plain words (pydantic says "list should have at least 1 item after validation")."""
    def count(n: object, what: str) -> str:
        return f"{n} {what}{'' if n == 1 else 's'}"

    if kind == "too_short":
        return f"needs at least {count(ctx.get('min_length'), 'item')}, found {count(ctx.get('actual_length'), 'item')}"
    if kind == "too_long":
        return f"takes at most {count(ctx.get('max_length'), 'item')}, found {count(ctx.get('actual_length'), 'item')}"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else \
            f"needs at least {count(ctx.get('min_length'), 'character')}, found {found!r}"
    if kind == "string_too_long":
        return f"takes at most {count(ctx.get('max_length'), 'character')}, found {len(str(found))}"
    bound = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
             "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}.get(kind)
    if bound is not None and bound[0] in ctx:
        limit = ctx[bound[0]]
        if isinstance(found, int) and not isinstance(found, bool) and isinstance(limit, int) and kind in (
                "greater_than", "less_than"):  # whole numbers: "greater than 0" is "at least 1"
            return f"must be {'at least' if kind == 'greater_than' else 'at most'} " \
                   f"{limit + 1 if kind == 'greater_than' else limit - 1}, found {found}"
        return f"must be {bound[1]} {limit}, found {found!r}"
    return None


def _fields_for(parent: object, extra: str) -> list[str]:
    """Field names of the spec model that best matches the mapping holding an unknown key."""
    if not isinstance(parent, dict):
        return []
    keys = set(parent) - {extra}
    best, score = [], -1
    for model in _all_models():
        kind_field = model.model_fields.get("kind")
        if "kind" in parent and kind_field is not None and parent["kind"] not in getattr(
            kind_field.annotation, "__args__", ()
        ):
            continue
        s = len(keys & set(model.model_fields))
        if s > score:
            best, score = list(model.model_fields), s
    return best


def _all_models() -> list[type[_Model]]:
    out, todo = [], [_Model]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            out.append(sub)
            todo.append(sub)
    return out
