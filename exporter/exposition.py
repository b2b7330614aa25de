"""The targets' samples written straight to the exposition formats, without building client Metric objects.

At thousands of jobs, prometheus_client's encoders spend most of a scrape's CPU validating label names and
formatting one sample object at a time. This writer produces byte for byte what `generate_latest` (text
format 0.0.4) and the OpenMetrics 1.0.0 encoder produce for the same families: families in catalogue order,
one HELP/TYPE per name, label names sorted, label values escaped, values as Go prints floats. The OpenMetrics
body ends without `# EOF`; the caller appends the rest of the exposition, which ends with it.
"""

from __future__ import annotations

import functools
import io
import operator
from collections.abc import Callable, Iterable, Sequence
from math import copysign
from typing import Any

from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.utils import floatToGoString

from exporter.metrics import Family, Output

_VALUES = {0.0: "0.0", 1.0: "1.0"}


def is_openmetrics(encoder: Callable[..., Any]) -> bool:
    """True for the OpenMetrics 1.0.0 encoder prometheus_client picks for Prometheus' default Accept header."""
    return (
        isinstance(encoder, functools.partial)
        and encoder.func is om_exposition.generate_latest
        and encoder.keywords.get("version") == "1.0.0"
        and encoder.keywords.get("escaping") in (om_exposition.UNDERSCORES, om_exposition.ALLOWUTF8)
    )


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


_Layout = tuple[io.BytesIO, Callable[..., str], Callable[[tuple[str, ...]], Any]]


def _layout(family: Family, target: io.BytesIO) -> _Layout:
    """Where a family's lines go, its line template (label names sorted) and how to put its values in that order."""
    order = sorted(range(len(family.labels)), key=lambda index: family.labels[index])
    labels = ",".join(f'{family.labels[index]}="{{}}"' for index in order)
    template = f"{family.full_name}{{{{{labels}}}}} {{}}\n" if order else f"{family.full_name} {{}}\n"
    if len(order) > 1:
        return target, template.format, operator.itemgetter(*order)
    return target, template.format, (lambda values: (values[order[0]],)) if order else (lambda values: ())


def render(families: Sequence[Family], outputs: Iterable[Output], *, openmetrics: bool = False) -> bytes:
    """The families that have samples, each with every output's samples in output order, as one body."""
    return b"".join(render_chunks(families, outputs, openmetrics=openmetrics))


def render_chunks(families: Sequence[Family], outputs: Iterable[Output], *, openmetrics: bool = False) -> list[bytes]:
    """What `render` writes, as the chunks to send one after another (a family's header, then its lines).

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
            layout = layouts.get(id(family))
            if layout is None:
                layout = layouts[id(family)] = _layout(family, buffers[family.name])
            target, line, sorted_values = layout
            text = _VALUES.get(value) if copysign(1.0, value) > 0 else None  # -0.0 == 0.0 but prints "-0.0"
            text = text or floatToGoString(value)  # type: ignore[no-untyped-call]
            joined = "".join(values)
            if "\\" in joined or '"' in joined or "\n" in joined:
                values = tuple(_escape(item) for item in values)
            target.write(line(*sorted_values(values), text).encode())
    chunks = []
    for name, buffer in buffers.items():
        if buffer.tell():
            chunks += [headers[name].encode(), buffer.getvalue()]  # the buffer's own bytes, shrunk in place
        buffer.close()
    return chunks
