"""`ai-chargeback-pluginserver`: Kong's plugin server for this project's plugins (kong-pdk dedicated mode).

One process serves both plugins on one socket: ``ai-chargeback`` (access + log)
and ``ai-chargeback-log`` (log only, for ai-proxy routes: log_only.py). Kong 3.9+
reads only the first entry of a query command's output
(kong/runloop/plugin_servers/process.lua, ``query_external_plugin_info``), so each
plugin gets its own ``pluginserver_names`` entry whose query command names it:
``--dump`` prints ``ai-chargeback``, ``--dump --plugin ai-chargeback-log`` the
other. The log-only entry has no start command (Kong then assumes the process is
managed elsewhere: kong/conf_loader/init.lua) and the same socket.

Kong runs it as both ``query_cmd`` (with ``--dump``: the plugin info JSON, and
nothing else, on stdout) and ``start_cmd``. The plugins are written for
python-style PDK returns, so ``--no-lua-style`` is always in force. The server
is kong-pdk's, hardened where Kong's behaviour would break it (see pluginserver.py).
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

PLUGIN_OPTION = "--plugin"


def main() -> None:
    if "--no-lua-style" not in sys.argv:
        sys.argv.append("--no-lua-style")
    dump_name = _pop_option(PLUGIN_OPTION)
    dumping = "--dump" in sys.argv or "-dump" in sys.argv
    # stdout belongs to Kong's query command: our logs go to stderr, always.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.WARNING if dumping else logging.INFO, handlers=[handler], force=True)
    logging.getLogger("ai-chargeback").setLevel(logging.INFO)

    from .handler import Plugin
    from .log_only import LogPlugin
    from .pluginserver import PluginSpec, serve
    from .schema import LOG_PLUGIN_NAME, PLUGIN_NAME, PRIORITY, VERSION, LogSchema, Schema

    plugins = [PluginSpec(PLUGIN_NAME, Plugin, Schema), PluginSpec(LOG_PLUGIN_NAME, LogPlugin, LogSchema)]
    serve(plugins, VERSION, PRIORITY, dump_name=dump_name or PLUGIN_NAME)


def _pop_option(name: str) -> str | None:
    """Take ``--plugin NAME`` (or ``--plugin=NAME``) out of argv: kong-pdk's own parser refuses unknown flags."""
    for index, arg in enumerate(sys.argv):
        if arg == name and index + 1 < len(sys.argv):
            value = sys.argv[index + 1]
            del sys.argv[index : index + 2]
            return value
        if arg.startswith(name + "="):
            del sys.argv[index]
            return arg.partition("=")[2]
    return None


if __name__ == "__main__":
    main()
