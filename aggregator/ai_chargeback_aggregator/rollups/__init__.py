"""Hourly and daily rollups, rebuilt per dirty period from deduplicated raw events (docs/storage.md)."""
