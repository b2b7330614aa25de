"""A refused configuration as one short line per problem, naming the field, never quoting a value.

pydantic's errors are reworded where its wording helps nobody (an unknown key names the closest known one; a
platform tag says which platforms exist); every line is kept to one line of bounded length whatever the file
holds (a key with a newline in it is shown escaped), and a flood of problems is cut to the first few.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

MAX_PROBLEMS = 20
"""Lines shown for one refused configuration; the rest are counted."""
MAX_LINE = 300
"""Characters shown of one line: a long key or pattern is cut, so output stays bounded."""
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_KEY_ERROR = "[key]"  # pydantic's location item for a problem with a dictionary's key rather than its value


class ConfigError(Exception):
    """A configuration that cannot be used; its lines name the field and the reason, one line each."""

    def __init__(self, lines: list[str]) -> None:
        shown = [_one_line(line) for line in lines[:MAX_PROBLEMS]]
        if len(lines) > MAX_PROBLEMS:
            shown.append(f"... and {len(lines) - MAX_PROBLEMS} more problems")
        super().__init__("\n".join(shown))
        self.lines = shown


def _one_line(text: str) -> str:
    """Control characters escaped (a newline cannot start a second "problem"), cut to MAX_LINE."""
    escaped = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)
    return escaped if len(escaped) <= MAX_LINE else escaped[: MAX_LINE - 3] + "..."


def problem_lines(exc: ValidationError, model: type[BaseModel], field_in_message: bool = False) -> list[str]:
    """One line per pydantic error: `where: why`, the location as written in the YAML file.

    `field_in_message`: a check across fields starts its message with the field at fault (`client_ca_file:
    required ...`); that field then joins the location.
    """
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=True):
        path, known, members = _walk(model, error["loc"])
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path, message = _tag_problem(error, path, members)
        else:
            message = _reason(error, path, known)
        field, sep, rest = message.partition(": ")
        if field_in_message and sep and field.isidentifier():
            path, message = [*path, field], rest
        where = _render(path)
        lines.append(f"{where}: {message}" if where else message)
    return lines


def _reason(error: Any, path: list[str | int], known: list[str]) -> str:
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(path[-1]), known, n=1) if path else []
        return "unknown key" + (f"; did you mean {close[0]}?" if close else "")
    return str(error["msg"])


def _tag_problem(error: Any, path: list[str | int], members: list[Any]) -> tuple[list[str | int], str]:
    """The discriminator (`platform`) missing or unknown: its own location, and the values it may take."""
    context = error.get("ctx") or {}
    key = str(context.get("discriminator", "")).strip("'")
    expected = [
        value
        for member in members
        if _is_model(member) and key in member.model_fields
        for value in _literal_values(member.model_fields[key].annotation)
    ]
    one_of = f"one of {', '.join(map(str, expected))}"
    if error["type"] == "union_tag_not_found":
        return [*path, key], f"required; {one_of}"
    close = difflib.get_close_matches(str(context.get("tag", "")), list(map(str, expected)), n=1)
    return [*path, key], f"not {one_of}" + (f"; did you mean {close[0]}?" if close else "")


def _walk(model: type[BaseModel], loc: Iterable[str | int]) -> tuple[list[str | int], list[str], list[Any]]:
    """The location without pydantic's union tags (`targets[0].siren.jobs` is `targets[0].jobs`), the keys the
    model holding its last item knows (for "did you mean"), and the types the location may be."""
    path: list[str | int] = []
    current: list[Any] = [model]
    known: list[str] = []
    for item in loc:
        if item == _KEY_ERROR:
            continue
        step = [nested for member in _members(current) for nested in _into(member, item)]
        if step and all(kind == "tag" for kind, _ in step):
            current = [annotation for _, annotation in step]  # a tag selects a union member; nobody wrote it
            continue
        known = [name for member in _members(current) if _is_model(member) for name in member.model_fields]
        path.append(item)
        current = [annotation for _, annotation in step]
    return path, known, _members(current)


def _into(annotation: Any, item: str | int) -> list[tuple[str, Any]]:
    """Where a location item leads from a type: ("field", its type) or ("tag", the union member it selects)."""
    if _is_model(annotation):
        fields = annotation.model_fields
        if isinstance(item, str) and item in fields:
            return [("field", fields[item].annotation)]
        if item == annotation.__name__ or any(item in _literal_values(f.annotation) for f in fields.values()):
            return [("tag", annotation)]
        return []
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and isinstance(item, int):
        return [("field", args[0])]
    if origin is dict:
        return [("field", args[1])]
    if isinstance(annotation, type) and item == annotation.__name__:
        return [("tag", annotation)]
    return []


def _members(annotations: Iterable[Any]) -> list[Any]:
    """Each type a location item may be in: Annotated unwrapped, unions and Optional flattened."""
    out: list[Any] = []
    for annotation in annotations:
        origin = get_origin(annotation)
        if origin is Annotated:
            out += _members([get_args(annotation)[0]])
        elif origin is Union or origin is types.UnionType:
            out += _members(get_args(annotation))
        else:
            out.append(annotation)
    return out


def _literal_values(annotation: Any) -> tuple[Any, ...]:
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _render(path: list[str | int]) -> str:
    """`targets[0].discovery.include[1]`; a key that is not a plain name is quoted, its escapes shown."""
    parts = []
    for index, item in enumerate(path):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            key = item if _PLAIN_KEY.fullmatch(item) else json.dumps(item)
            parts.append(f".{key}" if index else key)
    return "".join(parts)
