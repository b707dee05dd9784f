"""InfluxDB line protocol for stored sample rows (pure, and on the ingest hot path).

One line per row, millisecond precision::

    arete,agent=web-1 cpu=12.5,mem=40.2,disk=71.0,procs=312 1700000000123

Every field is written as a float (a bare number in line protocol) so a field never
changes type between points, which InfluxDB would refuse. ``None`` fields are left
out, and so are NaN and infinities (line protocol has no spelling for them); a row with
no field left has no line at all. Escaping follows influxdb-client's ``Point``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Final

from maestro.store.rows import FIELDS, SampleRow

_MEASUREMENT_ESCAPES: Final = str.maketrans(
    {",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_KEY_ESCAPES: Final = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_NEEDS_ESCAPE: Final = frozenset(",= \n\t\r\\")
_FIELD_PREFIXES: Final = tuple(f"{name.translate(_KEY_ESCAPES)}=" for name in FIELDS)
_FIRST_FIELD: Final = 4  # rows are (agent_id, seq, ts, epoch, *FIELDS)


def escape_measurement(name: str) -> str:
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_tag(value: str) -> str:
    """A tag value (or key) escaped for line protocol, as influxdb-client's ``Point`` does."""
    escaped = value.translate(_KEY_ESCAPES)
    # A final backslash would escape the space that ends the tag set.
    return escaped + " " if escaped.endswith("\\") else escaped


def _float_text(value: object) -> str | None:
    """``repr`` of the value as a float, or None when line protocol cannot carry it."""
    if type(value) is float:
        return repr(value) if math.isfinite(value) else None
    if type(value) is int:
        return str(value)  # no "i" suffix: the field stays a float
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return repr(number) if math.isfinite(number) else None


class LineEncoder:
    """Turns rows into lines for one measurement; keeps per-agent tag prefixes."""

    def __init__(self, measurement: str) -> None:
        self.measurement = measurement
        self._measurement = escape_measurement(measurement)
        self._prefixes: dict[str, str] = {}

    def _prefix(self, agent_id: str) -> str:
        prefix = self._prefixes.get(agent_id)
        if prefix is None:
            tag = escape_tag(agent_id) if _NEEDS_ESCAPE.intersection(agent_id) else agent_id
            # An empty tag value is not allowed: such a point goes without the tag.
            prefix = f"{self._measurement},agent={tag} " if tag else f"{self._measurement} "
            if len(self._prefixes) < 100_000:  # bounded: agent ids are few, but be safe
                self._prefixes[agent_id] = prefix
        return prefix

    def line(self, row: SampleRow) -> str | None:
        """The line of one row, or None when the row has no field to write."""
        fields = []
        for prefix, value in zip(_FIELD_PREFIXES, row[_FIRST_FIELD:], strict=False):
            if value is None:
                continue
            text = _float_text(value)
            if text is not None:
                fields.append(prefix + text)
        ts = row[2]
        if not fields or not isinstance(ts, int | float) or not math.isfinite(ts):
            return None
        return f"{self._prefix(str(row[0]))}{','.join(fields)} {round(ts * 1000)}"

    def lines(self, rows: Iterable[SampleRow]) -> list[str]:
        """The lines of ``rows`` in order, rows without fields left out."""
        out = []
        for row in rows:
            line = self.line(row)
            if line is not None:
                out.append(line)
        return out


def encode_rows(rows: Sequence[SampleRow], measurement: str) -> list[str]:
    """One-shot helper: the lines of ``rows`` for ``measurement``."""
    return LineEncoder(measurement).lines(rows)
