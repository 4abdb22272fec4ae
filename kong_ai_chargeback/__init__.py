"""kong-ai-chargeback: chargeback for AI traffic, metered at the Kong gateway.

Data flows one way, and the packages follow it:
``plugin`` (Kong-facing meter) -> ``proto`` (wire contract) -> ``aggregator``
(ingest, validate, price, store, report). ``cli`` is the thin front for people.
"""

__version__ = "0.1.0"
