"""A dedicated kong-pdk plugin server for a plugin that does nothing.

It is the baseline for benchmarks: the cost of running *a* Python plugin
(one HandleEvent round trip per phase) without any PDK call of its own.
Run it as `python -m support.noop_plugin` (with tests/ on sys.path) or as a
script path; both accept the usual kong-pdk flags (-p, --socket-name, -g,
--no-lua-style, --dump).
"""

from __future__ import annotations

from typing import Any

from kong_pdk.cli import start_dedicated_server

PLUGIN_NAME = "noop"
version = "0.1.0"
priority = 0
Schema: list[dict[str, Any]] = []


class Plugin:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def access(self, kong: Any) -> None:
        pass

    def log(self, kong: Any) -> None:
        pass


def main() -> None:
    start_dedicated_server(PLUGIN_NAME, Plugin, version, priority, Schema)


if __name__ == "__main__":
    main()
