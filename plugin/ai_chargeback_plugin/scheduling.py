"""The request path goes first: the log phase's Python work waits until the plugin server is idle.

In gevent mode (``-g``) the plugin server runs one greenlet at a time. A log
handler's Python work (parse serialize(), the usage and the event: ~100 µs)
holds up every access handler whose RPC arrives meanwhile, so a request waits
for the metering of an answer already sent. Before each stretch of that work,
the log handler waits until the server has nothing else ready (a libev idle
watcher, ``gevent.idle``), at most ``MAX_WAIT_S``: a server that is never idle
still meters every request, each a few milliseconds later.

Only after the handler's first PDK call: until that call, kong-pdk's
HandleEvent holds its global event lock (kong_pdk/server.py ``handle_event``,
``locked_by("e_lock")``), and waiting there would hold up every other event.

Threads mode has no such order to set (each event is an OS thread the
interpreter switches between), so there this costs nothing and waits for nothing.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_WAIT_S = 0.005


def _no_wait() -> None:
    return None


_wait: Callable[[], None] = _no_wait


def use_gevent() -> None:
    """Called once by a plugin server started with ``-g``, before it serves."""
    global _wait
    import gevent

    def wait_until_idle() -> None:
        with gevent.Timeout(MAX_WAIT_S, False):
            gevent.idle()

    _wait = wait_until_idle


def after_requests() -> None:
    """Let every ready greenlet (an access handler, an RPC to read) run first; never raises."""
    _wait()
