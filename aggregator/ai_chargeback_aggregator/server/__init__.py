"""The aggregator process: gRPC ingest, HTTP health/metrics/API, started and stopped together."""
