"""Reading the files a configuration names: regular files only, size-capped, never blocking, UTF-8 text.

The configuration file, the web configuration and every `*_file` secret go through here. A path to a FIFO
or a device (`/dev/zero`) is refused from its `stat` before it is opened, so nothing blocks or reads without
end; what is read is capped. A YAML error names the file, line and column and never quotes the text there:
the line may hold a secret (a password pasted inline by mistake), and the message reaches stderr and the
`/-/reload` answer. Nesting is limited before PyYAML's recursive composer sees the document.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from exporter.config_problems import ConfigError

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""A configuration or web configuration file: 100,000 job ids take about 3 MiB."""
MAX_SECRET_BYTES = 64 * 1024
"""A secret file: passwords, API keys and bearer tokens are far smaller."""
MAX_DEPTH = 64
"""Nested mappings and lists in a YAML document; a configuration needs fewer than ten."""
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser is about ten times faster
_OPENING = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSING = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
_YAML_PROBLEMS = {
    yaml.scanner.ScannerError: "syntax error",
    yaml.parser.ParserError: "syntax error",
    yaml.composer.ComposerError: "anchor or alias error",
    yaml.constructor.ConstructorError: "a value of an unsupported type",
}


class UnreadableError(Exception):
    """Why a file cannot be used, in words that quote nothing from it."""


def read_text(path: Path, limit: int) -> str:
    """The file's text: a regular file of at most `limit` bytes, in UTF-8."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UnreadableError(f"{path} is not a regular file")
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # replaced since the stat above
                raise UnreadableError(f"{path} is not a regular file")
            data = file.read(limit + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a usable path"
        raise UnreadableError(f"cannot read {path}: {why}") from None
    if len(data) > limit:
        raise UnreadableError(f"{path} is larger than {limit // 1024} KiB")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnreadableError(f"{path} is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableError(f"{path} is not UTF-8 text (a byte at offset {exc.start} is not UTF-8)") from None


def read_yaml_mapping(path: Path, flag: str) -> dict[str, Any]:
    """A YAML file holding a mapping, or a ConfigError naming the flag that gave the file."""
    try:
        text = read_text(path, MAX_DOCUMENT_BYTES)
    except UnreadableError as exc:
        raise ConfigError([f"{flag}: {exc}"]) from None
    try:
        too_deep = _too_deep(text)
        data = None if too_deep else yaml.load(text, Loader=_LOADER)  # noqa: S506 - the safe loader (C or Python)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([f"{flag}: {path} is not valid YAML: {_where(exc)}"]) from None
    except yaml.YAMLError:  # the reader's: a character YAML does not allow
        raise ConfigError([f"{flag}: {path} is not valid YAML: it holds a character YAML does not allow"]) from None
    except Exception:  # noqa: BLE001 - PyYAML's constructors raise plain errors on values such as 2024-13-01
        raise ConfigError([f"{flag}: {path} is not valid YAML: a value does not parse (a date or !!tag?)"]) from None
    if too_deep:
        raise ConfigError([f"{flag}: {path} is nested deeper than {MAX_DEPTH} levels at {too_deep}"])
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError([f"{flag}: {path} must hold a mapping at the top level"])
    return data


def _too_deep(text: str) -> str | None:
    """Where the document goes deeper than MAX_DEPTH, from the parser's events (which do not recurse)."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, _OPENING):
            depth += 1
            if depth > MAX_DEPTH:
                return _position(event.start_mark)
        elif isinstance(event, _CLOSING):
            depth -= 1
    return None


def _where(exc: yaml.MarkedYAMLError) -> str:
    kind = next((words for cls, words in _YAML_PROBLEMS.items() if isinstance(exc, cls)), "syntax error")
    return f"{kind} at {_position(exc.problem_mark or exc.context_mark)}"


def _position(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "an unknown position"
