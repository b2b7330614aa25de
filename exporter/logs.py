"""structlog set-up: JSON by default, console on a terminal, and every known secret masked before rendering.

Masking works on the event's values, before a renderer escapes anything (JSON's `\\"`, `\\uXXXX`, the console's
repr), so what is matched is the text as the code holds it: an event field, an exception text, an upstream's
error body. A secret can also arrive encoded, when an upstream echoes a request back: each value is therefore
masked in every form it takes on the way (JSON-escaped once or twice, URL-encoded, base64 at any alignment;
`encoded_forms`), whatever its length, and keys are never touched, so a line stays valid and readable.

Each target hands its secrets, and the session ids, tokens and signatures it obtains at run time, to a sink of
its own (`Redactor.sink()`): a renewed token replaces the last one (one value, and its forms, per slot; the
replaced ones leave when the collection that renewed them ends), and a target's values leave when its
collector is closed (a reload), so the set stays as large as what is in use.
"""

from __future__ import annotations

import base64
import bisect
import json
import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

import structlog

from exporter.settings import MASK

LEVELS = ("debug", "info", "warning", "error")


def encoded_forms(secret: str) -> frozenset[str]:
    """Every text that gives `secret` away in a log value: the secret itself; JSON-escaped with and without
    `\\uXXXX`, once and twice (a JSON request body echoed inside a JSON string); escaped once or not at all and
    URL-encoded (upper- or lower-case hex, `+` or `%20` for a space); and as it travels (in a header, or in a
    JSON body as `json.dumps` writes it) in base64, at each alignment it can have inside a longer text."""
    if _UNRESERVED.fullmatch(secret):  # no escaping changes it (a session id, a hex signature): a tenth of the work
        return frozenset({secret, *_base64_forms(secret.encode())} - {""})
    return _escaped_forms(secret)


def _escaped_forms(secret: str) -> frozenset[str]:
    on_the_wire = (secret, json.dumps(secret)[1:-1])
    once = {*on_the_wire, json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms = once | {json.dumps(text, ensure_ascii=only)[1:-1] for text in once for only in (True, False)}
    for text in once:
        for encoded in (quote(text, safe="", errors="surrogatepass"), quote_plus(text, errors="surrogatepass")):
            forms |= {encoded, _LOWER_HEX.sub(lambda hex_digits: hex_digits[0].lower(), encoded)}
    for text in on_the_wire:
        forms |= _base64_forms(text.encode("utf-8", "surrogatepass"))
    forms.discard("")
    return frozenset(forms)


_LOWER_HEX = re.compile(r"%[0-9A-F]{2}")
_UNRESERVED = re.compile(r"[0-9A-Za-z._~-]*")  # what JSON and URL encoding leave as it is


def _base64_forms(data: bytes) -> set[str]:
    """What every base64 text (standard or URL-safe) holding `data` shows of it, whatever precedes or follows: for
    each offset modulo 3 the data can start at, the characters of the 3-byte groups made of its bytes alone. Data
    too short to fill a group of its own: its encoding alone, with and without padding."""
    cores = set()
    for offset in range(3):
        first = 1 if offset else 0  # the group the data starts in mixes in a byte before it
        end = (offset + len(data)) // 3  # past the last group made of the data's bytes alone
        cores.add(base64.b64encode(bytes(offset) + data)[4 * first : 4 * end].decode())
    if len(data) < 3:
        alone = base64.b64encode(data).decode()
        cores |= {alone, alone.rstrip("=")}
    return cores | {core.replace("+", "-").replace("/", "_") for core in cores}


class Redactor:
    """Masks every form of every value its open sinks hold: as a structlog processor, in an event's values before
    rendering; with `redact`, in plain text (the standard library's log messages)."""

    def __init__(self) -> None:
        self._sinks: list[SecretSlots] = []
        self._held: dict[str, int] = {}  # form -> how many slots hold it
        self._order: list[tuple[int, str]] = []  # (-length, form): longest first, kept in order as forms come and go
        self._ordered: tuple[str, ...] = ()  # what readers use, replaced whole after a change, never re-sorted per line
        self._changed = False  # forms came or went since `_ordered` was built
        self._lock = threading.Lock()

    def sink(self) -> SecretSlots:
        """A new sink for one target's secrets, masked from now until it is closed."""
        sink = SecretSlots(self)
        with self._lock:
            self._sinks.append(sink)
        return sink

    def values(self) -> set[str]:
        """The values held (one per slot of each open sink), without their encoded forms."""
        with self._lock:
            return {value for sink in self._sinks for value, _ in sink.slots.values()}

    def forms(self) -> int:
        """How many distinct texts are masked."""
        return len(self._current())

    def redact(self, text: str) -> str:
        return _masked_text(text, self._current())

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """The structlog processor before the renderer: each value as it will be written, masked; keys untouched.

        One scan of all of the event's text finds which forms occur (usually none), then only those are replaced.
        """
        texts: list[str] = []
        plain = {key: _plain(value, texts) for key, value in event.items()}
        ordered = self._current()
        if ordered:
            text = "\0".join(texts)
            present = tuple(filter(text.__contains__, ordered))  # a loop in C: this runs for every line
            if present:
                plain = {key: _masked(value, present) for key, value in plain.items()}
        return plain

    def _put(self, sink: SecretSlots, slot: str, value: str) -> None:
        held = sink.slots.get(slot)
        if held is not None and held[0] == value:
            return
        forms = encoded_forms(value)
        with self._lock:
            if sink not in self._sinks:
                return  # closed: a collection still running after a reload adds nothing that would stay
            held = sink.slots.get(slot)
            sink.slots[slot] = (value, forms)
            if held is not None:
                sink.replaced.append(held[1])
            self._update(forms, frozenset())

    def _current(self) -> tuple[str, ...]:
        """The forms, longest first, rebuilt on the first read after a change: a collection that signs hundreds of
        requests (each signature a value of its own until the collection ends) rebuilds it at most once per logged
        line, not once per signature, which made the cost of a collection grow with the square of its requests."""
        if self._changed:
            with self._lock:
                if self._changed:
                    self._ordered = tuple(form for _, form in self._order)
                    self._changed = False
        return self._ordered

    def _settle(self, sink: SecretSlots) -> None:
        with self._lock:
            replaced, sink.replaced = sink.replaced, []
            for forms in replaced:
                self._update(frozenset(), forms)

    def _close(self, sink: SecretSlots) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)
                for forms in [*sink.replaced, *(forms for _, forms in sink.slots.values())]:
                    self._update(frozenset(), forms)

    def _update(self, added: frozenset[str], removed: frozenset[str]) -> None:
        """Count forms in and out (call with the lock held); the order changes only where a form comes or goes."""
        for form in added:
            self._held[form] = self._held.get(form, 0) + 1
            if self._held[form] == 1:
                bisect.insort(self._order, (-len(form), form))
        for form in removed:
            self._held[form] -= 1
            if self._held[form] == 0:
                del self._held[form]
                del self._order[bisect.bisect_left(self._order, (-len(form), form))]
        self._changed = True


class SecretSlots:
    """One target's values to mask, one per slot (`password`, `token`, ...): a new value replaces the slot's last,
    with all its encoded forms. A replaced value stays masked until `settle()`: the failure its renewal answered
    (a session id the upstream refused and echoed) is logged when the collection ends."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self.slots: dict[str, tuple[str, frozenset[str]]] = {}
        self.replaced: list[frozenset[str]] = []

    def put(self, slot: str, value: str) -> None:
        self._redactor._put(self, slot, value)

    def settle(self) -> None:
        """Forget the replaced values; called when a collection has ended and logged what it had to."""
        self._redactor._settle(self)

    def close(self) -> None:
        self._redactor._close(self)


def _plain(value: Any, texts: list[str]) -> Any:
    """A log value as the renderers will write it, its strings (not keys) added to `texts`: numbers, strings and
    containers of them stay, anything else becomes its text (bytes decoded), so what is masked is what is written."""
    if isinstance(value, str):
        texts.append(value)
        return value
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        return {key: _plain(item, texts) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item, texts) for item in value]
    return _plain(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value), texts)


def _masked(value: Any, forms: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _masked_text(value, forms)
    if isinstance(value, dict):
        return {key: _masked(item, forms) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, forms) for item in value]
    return value


def _masked_text(text: str, forms: tuple[str, ...]) -> str:
    """`text` with each of `forms` (longest first, so a value is masked whole) replaced. Plain replacement, not one
    compiled pattern: every renewed token would leave a dead pattern in the `re` module's cache."""
    for form in filter(text.__contains__, forms):
        text = text.replace(form, MASK)
    return text


def configure(redactor: Redactor, level: str = "info", fmt: str | None = None, stream: TextIO | None = None) -> None:
    """Set up structlog and route the standard library's logging (urllib3 and friends) through it."""
    out = stream or sys.stderr
    if fmt is None:
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _stringify_exceptions,
            redactor,  # before the level and the time stamp: a short secret never masks those
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(_StdlibFormatter(redactor))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)


def _stringify_exceptions(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """One line per event: an exception becomes its type and message, never a multi-line traceback."""
    exc = event.pop("exc_info", None)
    if isinstance(exc, BaseException):
        event["exception"] = f"{type(exc).__name__}: {exc}"
    return event


class _StdlibFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return f"level={record.levelname.lower()} logger={record.name} {self._redactor.redact(record.getMessage())}"
