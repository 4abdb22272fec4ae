"""The showback console: a browser UI served by the aggregator on its HTTP port (docs/console.md).

Pages (overview, team, drill-down, statement, governance, budgets, prices,
access) are drawn on the server from analytics' public functions; each table
downloads as CSV. Sign-in is required: local accounts and tokens from the
accounts file (``chargeback console ...``), or OpenID Connect. Access is
decided on the server for every page and download (access.py).
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from ..settings import AggregatorSettings
from .app import Console

__all__ = ["Console", "mount"]


def mount(settings: AggregatorSettings) -> tuple[Console, list[BaseRoute]]:
    """The console and its routes, to add to the aggregator's HTTP side."""
    console = Console(settings)
    return console, console.routes()
