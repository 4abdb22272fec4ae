"""Pricing at ingest: the public catalog (genai-prices) plus effective-dated overrides."""
