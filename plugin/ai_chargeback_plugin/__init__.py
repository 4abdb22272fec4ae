"""The ai-chargeback Kong plugin: resolves who, records what, ships usage events."""
