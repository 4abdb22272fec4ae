"""The aggregator: receives usage streams, validates, dedups, prices and stores them."""
