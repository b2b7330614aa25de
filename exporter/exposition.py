"""The exposition: every target's samples merged into families, rendered, and the rendering shared.

At thousands of jobs, prometheus_client's encoders spend most of a scrape's CPU validating label names and
formatting one sample object at a time. So the targets' samples are written straight to the two formats
Prometheus asks for, without building client Metric objects, byte for byte what `generate_latest` (text format
0.0.4) and the OpenMetrics 1.0.0 encoder produce for the same families: families in catalogue order, one
HELP/TYPE per name, label names sorted, label values escaped, values as Go prints floats. Any other format
prometheus_client negotiates is encoded by it from merged Metric objects.
"""

from __future__ import annotations

import io
import operator
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from math import copysign
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporter.metrics import STATES, Family, Output

_VALUES = {0.0: "0.0", 1.0: "1.0"}
_OPENMETRICS = "application/openmetrics-text"
_OPENMETRICS_ESCAPINGS = ("underscores", "allow-utf-8")  # the same text for names that are valid either way


@dataclass(frozen=True)
class Format:
    """What a scrape asked for: the content type to answer with, the client encoder for everything not written
    here, and whether the targets' samples are written here as OpenMetrics (True), text 0.0.4 (False) or by the
    encoder (None)."""

    content_type: str
    encoder: Callable[[Collector], bytes]
    openmetrics: bool | None


def negotiate(accept: str) -> Format:
    """The format prometheus_client picks for an Accept header (OpenMetrics for Prometheus' default)."""
    encoder, content_type = choose_encoder(accept)
    media, *parameters = (part.strip() for part in content_type.split(";"))
    options = dict(part.split("=", 1) for part in parameters if "=" in part)
    if content_type == CONTENT_TYPE_PLAIN_0_0_4:
        return Format(content_type, encoder, False)
    escaping = options.get("escaping", "underscores")
    if media == _OPENMETRICS and options.get("version") == "1.0.0" and escaping in _OPENMETRICS_ESCAPINGS:
        return Format(content_type, encoder, True)
    return Format(content_type, encoder, None)


class Exposition:
    """Renders the targets' samples; scrapes that joined one collection share one rendering.

    One rendering at a time also keeps simultaneous scrapes from holding several copies of a large exposition.
    """

    def __init__(self, families: Sequence[Family]) -> None:
        self.families = families
        self._lock = threading.Lock()
        self._rendered: tuple[tuple[Output, ...], bool, list[bytes]] | None = None

    def release(self) -> None:
        """Forget the last rendering: a collection is in flight, so every scrape from now on gets new samples, and
        freed now, not after the collection, the old body never adds to the peak."""
        self._rendered = None

    def chunks(self, outputs: tuple[Output, ...], fmt: Format, extra: Collector | None) -> list[bytes]:
        """The whole body for these outputs and `extra` (the exporter's own metrics), as chunks to send one after
        another: the shared targets' part is never copied."""
        if fmt.openmetrics is None:
            parts: list[Callable[[], Iterable[Metric]]] = [lambda: merge(self.families, outputs)]
            if extra is not None:
                parts.append(extra.collect)
            return [fmt.encoder(_Merged(parts))]
        body = self._body(outputs, fmt.openmetrics)
        if extra is not None:
            return [*body, fmt.encoder(extra)]
        return [*body, b"# EOF\n"] if fmt.openmetrics else list(body)

    def _body(self, outputs: tuple[Output, ...], openmetrics: bool) -> list[bytes]:
        with self._lock:
            last = self._rendered
            if (
                last is not None
                and last[1] == openmetrics
                and len(last[0]) == len(outputs)
                and all(mine is theirs for mine, theirs in zip(last[0], outputs, strict=True))
            ):
                return last[2]
            self._rendered = None  # the previous body is not kept alive while the next one is written
            body = render_chunks(self.families, outputs, openmetrics=openmetrics)
            self._rendered = (outputs, openmetrics, body)
            return body


class _Merged(Collector):
    """A registry-shaped view of several sources of Metric objects, for one client encoding."""

    def __init__(self, parts: Sequence[Callable[[], Iterable[Metric]]]) -> None:
        self._parts = parts

    def collect(self) -> Iterable[Metric]:
        for part in self._parts:
            yield from part()


def _empty(family: Family) -> Metric:
    if family.kind == "counter":
        return CounterMetricFamily(family.full_name, family.help, labels=family.labels)
    return GaugeMetricFamily(family.full_name, family.help, labels=family.labels)


def merge(families: Sequence[Family], outputs: Iterable[Output]) -> list[Metric]:
    """One client Metric per family name, holding every target's samples, in catalogue order."""
    built: dict[str, Metric] = {}
    for family in families:
        built.setdefault(family.name, _empty(family))
    for output in outputs:
        for family, values, value in output.all_samples():
            labels = dict(zip(family.labels, values, strict=True))
            built[family.name].samples.append(Sample(family.full_name, labels, value))
    return [metric for metric in built.values() if metric.samples]


def _escaped(values: tuple[str, ...]) -> tuple[str, ...]:
    joined = "".join(values)
    if "\\" in joined or '"' in joined or "\n" in joined:
        return tuple(_escape(item) for item in values)
    return values


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _help(text: str, openmetrics: bool) -> str:
    escaped = text.replace("\\", "\\\\").replace("\n", "\\n")
    return escaped.replace('"', '\\"') if openmetrics else escaped


def _header(family: Family, openmetrics: bool) -> str:
    name = family.full_name
    if openmetrics and family.kind == "counter":
        name = name.removesuffix("_total")
    return f"# HELP {name} {_help(family.help, openmetrics)}\n# TYPE {name} {family.kind}\n"


_Layout = tuple[io.BytesIO, list[str | None], slice, Callable[[tuple[str, ...]], Any], int]


def _layout(family: Family, target: io.BytesIO) -> _Layout:
    """Where a family's lines go, the fixed pieces of its line with a gap for each label value and for the value
    (label names sorted), the slice of the value gaps, how to put the values in that order, and the gap of the
    `state` label (-1 without one). Filling the gaps and joining costs half of `str.format` on a template, which
    parses the template again for every line."""
    order = sorted(range(len(family.labels)), key=lambda index: family.labels[index])
    names = [family.labels[index] for index in order]
    fixed = [f'{family.full_name}{{{names[0]}="', *(f'",{name}="' for name in names[1:]), '"} '] if names else []
    fixed = fixed or [f"{family.full_name} "]
    parts: list[str | None] = [piece for text in fixed for piece in (text, None)]
    parts.append("\n")
    gaps = slice(1, 2 * len(order), 2)
    state = 2 * names.index("state") + 1 if "state" in names else -1
    if len(order) > 1:
        return target, parts, gaps, operator.itemgetter(*order), state
    return target, parts, gaps, (lambda values: (values[order[0]],)) if order else (lambda values: ()), state


def render_chunks(families: Sequence[Family], outputs: Iterable[Output], *, openmetrics: bool = False) -> list[bytes]:
    """The families that have samples, each with every output's samples in output order, as the chunks to send
    one after another (a family's header, then its lines). The OpenMetrics body ends without `# EOF`.

    Lines are encoded as they are written, so a large exposition exists once as text lines never, and the
    chunks are the written buffers themselves, so it is never held twice either.
    """
    headers: dict[str, str] = {}
    for family in families:
        headers.setdefault(family.name, _header(family, openmetrics))
    buffers = {name: io.BytesIO() for name in headers}
    layouts: dict[int, _Layout] = {}
    for output in outputs:
        for family, values, value in output.samples:
            layout = layouts.get(id(family)) or layouts.setdefault(id(family), _layout(family, buffers[family.name]))
            target, parts, gaps, sorted_values, _state = layout
            text = _VALUES.get(value) if copysign(1.0, value) > 0 else None  # -0.0 == 0.0 but prints "-0.0"
            parts[gaps] = sorted_values(_escaped(values))
            parts[-2] = text or floatToGoString(value)  # type: ignore[no-untyped-call]
            target.write("".join(parts).encode())  # type: ignore[arg-type]  # every gap filled just now
        for family, values, current in output.state_sets:
            layout = layouts.get(id(family)) or layouts.setdefault(id(family), _layout(family, buffers[family.name]))
            target, parts, gaps, sorted_values, where = layout
            parts[gaps] = sorted_values(_escaped(values))
            before, after = "".join(parts[:where]), "".join(parts[where + 1 : -2])  # type: ignore[arg-type]
            lines = [f"{before}{state}{after}{'1.0' if state == current else '0.0'}\n" for state in STATES]
            target.write("".join(lines).encode())  # the state set's eight lines at once
    chunks = []
    for name, buffer in buffers.items():
        if buffer.tell():
            chunks += [headers[name].encode(), buffer.getvalue()]  # the buffer's own bytes, shrunk in place
        buffer.close()
    return chunks
