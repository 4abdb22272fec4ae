from support.aggregator_fixtures import aggregator  # noqa: F401  (pytest fixture)
