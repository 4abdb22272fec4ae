"""`ai-chargeback-log`: the plugin for routes whose usage Kong's ai-proxy already records.

On such a route the main plugin's ``access`` has nothing to do (``usage_capture:
ai_proxy``), yet Kong still makes one RPC round trip into the plugin server for it
on every request. This plugin has no ``access`` at all, so nothing of ours is on
the request path:

* kong-pdk advertises as a plugin's phases the methods its class defines
  (kong_pdk/module.py, ``Module.__init__``: ``hasattr(self.cls, phase)``), and
  ``get_plugin_info`` (kong_pdk/server.py) reports them as ``Phases``;
* Kong builds handlers only for the phases an external plugin declares
  (kong/runloop/plugin_servers/plugin.lua, ``build_phases``: one closure per entry
  of ``plugin.phases``), so it never calls ours in access. Its log handler runs in
  ``ngx.timer.at(0, ...)`` after the client has its answer.

What it keeps from the main plugin, for the same code runs: identity resolution
(consumer, tags, trusted headers), one event per log phase, the policy outcome,
never raising, the durable spool and sender. Its config is the main plugin's
schema minus what acts on the request path (schema.REQUEST_PATH_FIELDS), with
``usage_capture: ai_proxy``. It cannot enforce budgets (that needs access): use
the main plugin on a route that must.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .config import PluginConfig
from .handler import Metering
from .schema import LOG_ONLY_SETTINGS


class LogPlugin(Metering):
    """The main plugin's log phase in ai_proxy mode, and no other phase (see the module docstring)."""

    @staticmethod
    def read_config(raw: Mapping[str, Any] | str) -> PluginConfig:
        data = json.loads(raw) if isinstance(raw, (str, bytes)) else dict(raw)
        return PluginConfig.from_kong({**data, **LOG_ONLY_SETTINGS})
