"""`ai-chargeback-pluginserver`: Kong's plugin server for this one plugin (kong-pdk dedicated mode).

Kong runs it as both ``query_cmd`` (with ``--dump``: the plugin info JSON, and
nothing else, on stdout) and ``start_cmd``. The plugin is written for
python-style PDK returns, so ``--no-lua-style`` is always in force. The server
is kong-pdk's, hardened where Kong's behaviour would break it (see pluginserver.py).
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def main() -> None:
    if "--no-lua-style" not in sys.argv:
        sys.argv.append("--no-lua-style")
    dumping = "--dump" in sys.argv or "-dump" in sys.argv
    # stdout belongs to Kong's query command: our logs go to stderr, always.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.WARNING if dumping else logging.INFO, handlers=[handler], force=True)
    logging.getLogger("ai-chargeback").setLevel(logging.INFO)

    from .handler import Plugin
    from .pluginserver import serve
    from .schema import PLUGIN_NAME, PRIORITY, VERSION, Schema

    serve(PLUGIN_NAME, Plugin, VERSION, PRIORITY, Schema)


if __name__ == "__main__":
    main()
