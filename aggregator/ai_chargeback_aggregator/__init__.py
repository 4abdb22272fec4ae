"""The aggregator side of kong-ai-chargeback, in the order data flows through it.

``ingest`` (gRPC streams: validate, deduplicate, hand to the writer) -> ``pricing``
(rates at ingest, reprice) -> ``store`` (ClickHouse: client, migrations, retention)
and ``rollups`` (hourly/daily tables rebuilt from the raw events) -> ``analytics``
(reports, statements, governance, reconciliation: read-only over the store) ->
``cli`` and ``server`` (the `chargeback` command and the aggregator process).
"""

from importlib.metadata import version

__version__ = version("kong-ai-chargeback-aggregator")
