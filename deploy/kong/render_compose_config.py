"""Render deploy/kong/kong.compose.yml from the root kong.yml: one source for both.

kong.yml points services at the real providers and the plugin at a local
aggregator. Inside docker-compose the upstreams are the mock LLM and the
aggregator is a service name, so this script rewrites exactly those fields
(service URLs; ai-proxy's model.options.upstream_url, since ai-proxy sends
requests to the provider's own endpoint unless told otherwise;
aggregator_addresses, spool_dir) and keeps everything else (routes, key-auth
consumers, tags, plugin options, vault references: docker-compose.yml gives the
Kong container the variables they name) as written. A test fails when the
committed file is stale; `make deploy-configs` regenerates it.

    python deploy/kong/render_compose_config.py [--check]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "kong.yml"
TARGET = Path(__file__).resolve().parent / "kong.compose.yml"

# Compose service names (docker-compose.yml); scheme://host:port only, paths are kept.
MOCK_UPSTREAM = "http://mock-llm:8080"
AGGREGATOR_ADDRESSES = ["aggregator:50051"]
# On the volume the Kong image prepares, so unacked events survive a restart.
SPOOL_DIR = "/var/lib/ai-chargeback/spool"
PLUGIN = "ai-chargeback"
LOG_PLUGIN = "ai-chargeback-log"  # the log-only plugin (same plugin server): same two fields rewritten
AI_PROXY = "ai-proxy"
# The mock LLM's endpoint for each ai-proxy (route_type, provider) kong.yml uses.
AI_PROXY_PATHS = {("llm/v1/chat", "openai"): "/v1/chat/completions", ("preserve", "anthropic"): "/v1/messages"}

HEADER = """\
# GENERATED from kong.yml by deploy/kong/render_compose_config.py: do not edit.
# Same routes, consumers and plugin options as kong.yml; upstreams point at the
# compose mock LLM and the plugin at the compose aggregator.
"""


def _retarget(url: str) -> str:
    mock = urlsplit(MOCK_UPSTREAM)
    parts = urlsplit(url)
    return urlunsplit((mock.scheme, mock.netloc, parts.path, parts.query, parts.fragment))


def _plugins(container: dict[str, Any], name: str = PLUGIN) -> list[dict[str, Any]]:
    return [p for p in container.get("plugins") or [] if p.get("name") == name]


def render(config: dict[str, Any]) -> dict[str, Any]:
    """The compose variant of a parsed kong.yml (the input is not modified)."""
    out = copy.deepcopy(config)
    holders: list[dict[str, Any]] = [out]
    for service in out.get("services") or []:
        if "url" in service:
            service["url"] = _retarget(service["url"])
        holders.append(service)
        holders.extend(service.get("routes") or [])
    holders.extend(out.get("routes") or [])
    for holder in holders:
        for plugin in _plugins(holder) + _plugins(holder, LOG_PLUGIN):
            plugin.setdefault("config", {})
            plugin["config"]["aggregator_addresses"] = list(AGGREGATOR_ADDRESSES)
            plugin["config"]["spool_dir"] = SPOOL_DIR
        for plugin in _plugins(holder, AI_PROXY):
            config = plugin["config"]
            key = (config["route_type"], config["model"]["provider"])
            if key not in AI_PROXY_PATHS:
                raise SystemExit(f"no mock LLM endpoint for ai-proxy {key}: add one to AI_PROXY_PATHS")
            config["model"].setdefault("options", {})["upstream_url"] = MOCK_UPSTREAM + AI_PROXY_PATHS[key]
    return out


def render_text(source: Path = SOURCE) -> str:
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    return HEADER + yaml.safe_dump(render(config), sort_keys=False, default_flow_style=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is stale")
    args = parser.parse_args(argv)
    text = render_text()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python {Path(__file__).relative_to(ROOT)}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
