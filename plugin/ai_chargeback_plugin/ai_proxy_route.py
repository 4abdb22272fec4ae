"""Whether a plugin instance meters a route Kong's ai-proxy serves: learned in log, used in access.

In ``auto`` mode, access reads the request (Content-Length, body) and decides
buffering so that log can parse a non-streamed answer and estimate a stream's
prompt: three PDK round trips on the request path. On a route where ai-proxy
runs, that work is already done by Kong: ai-proxy buffers every non-streamed
request itself (kong/llm/plugin/shared-filters/enable-buffering.lua: in access,
``enable_buffering()`` unless stream mode) and counts streams in its analytics.
So once every proxied request this instance has logged carried ai-proxy's
analytics, access does nothing (0 PDK calls) and log reads what ai-proxy buffered.

One proxied request without ai-proxy analytics (a service-wide or global plugin
covering routes without ai-proxy, or ``log_statistics`` off) turns this off for
the instance's life: the request path goes back to the full ``auto`` work. A
request whose access was skipped never assumes its answer was buffered: log asks
``kong.nginx.get_ctx("buffered_proxying")`` (the saved ctx: cannot raise) first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import kong_state
from .usage import ai_proxy_ran


class AiProxyRoute:
    """Per plugin instance (so per plugin config, per worker): plain booleans, races are harmless."""

    __slots__ = ("mixed", "seen")

    def __init__(self) -> None:
        self.seen = False  # a proxied request with ai-proxy analytics was logged
        self.mixed = False  # a proxied request without them was: never skip again

    @property
    def skip_access(self) -> bool:
        return self.seen and not self.mixed

    def learn(self, serialized: Mapping[str, Any]) -> None:
        if self.mixed or not kong_state.proxied(serialized):
            return
        if ai_proxy_ran(serialized):
            self.seen = True
        else:
            self.mixed = True
