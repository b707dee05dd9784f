"""The optional InfluxDB sink: line protocol, a durable spool, the writer task.

Wiring (done by the maestro when ``influx.url`` is set)::

    spool = InfluxSpool(settings.influx)                  # the store's stager
    store = Store.open(path, migrations={..., COMPONENT: MIGRATIONS})
    sink = InfluxSink(settings.influx, path)             # task: await sink.run()

Importing this package does not load influxdb-client; the sink loads it on first write.
"""

from __future__ import annotations

from maestro.influx.failures import WriteFailure
from maestro.influx.lineproto import LineEncoder, encode_rows
from maestro.influx.settings import InfluxSettings
from maestro.influx.sink import FlushResult, InfluxSink, SinkStats
from maestro.influx.spool import COMPONENT, MIGRATIONS, InfluxSpool, SpoolTotals

__all__ = [
    "COMPONENT",
    "MIGRATIONS",
    "FlushResult",
    "InfluxSettings",
    "InfluxSink",
    "InfluxSpool",
    "LineEncoder",
    "SinkStats",
    "SpoolTotals",
    "WriteFailure",
    "encode_rows",
]
