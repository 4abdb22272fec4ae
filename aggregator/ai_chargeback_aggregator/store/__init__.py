"""ClickHouse access (embedded chDB or a server), the schema migrations and retention."""
