"""Test support servers: a mock LLM upstream and a no-op plugin server."""
