"""Load a DB-less `kong.yml` (`_format_version: "3.0"`) into Kong entities.

Entity records carry the fields and defaults of Kong's core schemas
(kong/db/schema/entities/{services,routes,consumers}.lua) because plugins see
them verbatim through kong.router.get_route()/get_service(),
kong.client.get_consumer() and serialize(). Ids missing from kong.yml are
derived with uuid5 from entity names, so they are stable across runs.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .bridge import PluginEntity
from .context import Headers
from .errors import ConfigValidationError, DeclarativeConfigError
from .luaisms import LuaArray, normalize_path
from .schema_validator import MISSING as _MISSING_CONFIG

HARNESS_NAMESPACE = uuid.UUID("6f1c7a9e-4b2d-5e8f-9a3c-1d2e3f4a5b6c")
DEFAULT_WORKSPACE_ID = str(uuid.uuid5(HARNESS_NAMESPACE, "workspace:default"))
_TOP_LEVEL_KEYS = {
    "_format_version", "_transform", "_comment", "_workspace", "_info",
    "services", "routes", "consumers", "plugins", "upstreams", "certificates",
    "ca_certificates", "snis", "vaults", "keyauth_credentials",
}  # fmt: skip
_PLUGIN_KEYS = {
    "id", "name", "instance_name", "config", "enabled", "protocols", "tags",
    "route", "service", "consumer", "created_at", "updated_at", "ordering",
}  # fmt: skip
_ROUTE_DEFAULTS: dict[str, Any] = {
    "protocols": ["http", "https"],
    "https_redirect_status_code": 426,
    "regex_priority": 0,
    "strip_path": True,
    "path_handling": "v0",
    "preserve_host": False,
    "request_buffering": True,
    "response_buffering": True,
}
_SERVICE_DEFAULTS: dict[str, Any] = {
    "protocol": "http",
    "retries": 5,
    "connect_timeout": 60000,
    "write_timeout": 60000,
    "read_timeout": 60000,
    "enabled": True,
}

# A validator per plugin name: returns the filled config or raises ConfigValidationError.
ConfigValidator = Callable[[Any], dict[str, Any]]


def stable_id(kind: str, key: str) -> str:
    return str(uuid.uuid5(HARNESS_NAMESPACE, f"{kind}:{key}"))


@dataclass
class Route:
    record: dict[str, Any]
    service_name: str | None
    regex_paths: list[re.Pattern[str]] = field(default_factory=list)
    prefix_paths: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def name(self) -> str | None:
        return self.record.get("name")


@dataclass
class RouteMatch:
    route: Route
    prefix: str  # matched prefix ("/" when none) -> X-Forwarded-Prefix
    postfix: str  # rest of the path after the match -> upstream uri


@dataclass
class DeclarativeConfig:
    services: dict[str, dict[str, Any]]  # by id
    routes: list[Route]
    consumers: dict[str, dict[str, Any]]  # by id
    credentials: dict[str, dict[str, Any]]  # keyauth key -> credential record
    plugins: list[PluginEntity]
    workspace_id: str = DEFAULT_WORKSPACE_ID
    source: str = ""

    # ---------- lookups ----------

    def service(self, service_id: str) -> dict[str, Any]:
        return self.services[service_id]

    def service_by_name(self, name: str) -> dict[str, Any]:
        for record in self.services.values():
            if record.get("name") == name or record["id"] == name:
                return record
        raise KeyError(name)

    def route_by_name(self, name: str) -> Route:
        for route in self.routes:
            if route.name == name or route.id == name:
                return route
        raise KeyError(name)

    def consumer_by_username(self, username: str) -> dict[str, Any] | None:
        for record in self.consumers.values():
            if record.get("username") == username:
                return record
        return None

    def find_consumer(self, key: str, by_username: bool = False) -> dict[str, Any] | None:
        if key in self.consumers:
            return self.consumers[key]
        return self.consumer_by_username(key) if by_username else None

    def plugins_named(self, name: str) -> list[PluginEntity]:
        return [p for p in self.plugins if p.name == name]

    # ---------- routing ----------

    def match(self, method: str, host: str, path: str, headers: Headers | None = None) -> RouteMatch | None:
        """Route selection (simplified traditional_compatible order): regex
        paths first by regex_priority, then prefix paths longest first."""
        normalized = normalize_path(path, True) or "/"
        regex_hits: list[tuple[int, int, RouteMatch]] = []
        prefix_hits: list[tuple[int, int, RouteMatch]] = []
        for index, route in enumerate(self.routes):
            rec = route.record
            if "http" not in rec["protocols"]:
                continue
            if rec.get("methods") and method.upper() not in rec["methods"]:
                continue
            if rec.get("hosts") and not _host_matches(host, rec["hosts"]):
                continue
            if rec.get("headers") and not _headers_match(headers or Headers(), rec["headers"]):
                continue
            if not route.regex_paths and not route.prefix_paths:
                prefix_hits.append((0, -index, RouteMatch(route, "/", normalized)))
                continue
            for pattern in route.regex_paths:
                m = pattern.match(normalized)
                if m:
                    prefix = normalized[: m.end()]
                    regex_hits.append((rec["regex_priority"], -index, RouteMatch(route, prefix, normalized[m.end() :])))
                    break
            for prefix in sorted(route.prefix_paths, key=len, reverse=True):
                if normalized.startswith(prefix):
                    prefix_hits.append((len(prefix), -index, RouteMatch(route, prefix, normalized[len(prefix) :])))
                    break
        if regex_hits:
            return max(regex_hits, key=lambda hit: hit[:2])[2]
        if prefix_hits:
            return max(prefix_hits, key=lambda hit: hit[:2])[2]
        return None

    def plugin_for(
        self, name: str, route_id: str | None, service_id: str | None, consumer_id: str | None
    ) -> PluginEntity | None:
        """plugins_iterator.lua lookup_cfg: the most specific enabled entity wins.
        (Combos naming an id the request lacks collapse into less specific ones
        that Kong tries in the same order, so they need no special casing.)"""
        by_scope = {(p.route_id, p.service_id, p.consumer_id): p for p in self.plugins if p.name == name and p.enabled}
        r, s, c = route_id, service_id, consumer_id
        combos = (
            (r, s, c), (r, None, c), (None, s, c), (r, s, None),
            (None, None, c), (r, None, None), (None, s, None),
        )  # fmt: skip
        for combo in combos:
            if all(part is None for part in combo):
                continue
            if combo in by_scope:
                return by_scope[combo]
        return by_scope.get((None, None, None))


def _headers_match(headers: Headers, wanted: dict[str, list[str]]) -> bool:
    # every listed header must be present with one of the listed values
    for name, values in wanted.items():
        present = [v.lower() for v in headers.get_all(name)]
        if not any(str(v).lower() in present for v in values):
            return False
    return True


def _host_matches(host: str, patterns: list[str]) -> bool:
    host = host.lower()
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif pattern.endswith(".*"):
            if host.startswith(pattern[:-1]):
                return True
        elif host == pattern:
            return True
    return False


def upstream_path(route: Route, match: RouteMatch, service: dict[str, Any], request_path: str) -> str:
    """kong/router/utils.lua get_upstream_uri_v0."""
    base = service.get("path") or "/"
    strip = route.record["strip_path"]
    req_uri = normalize_path(request_path, True) or "/"
    postfix = match.postfix
    if base.endswith("/"):
        if strip:
            if postfix == "":
                if base == "/":
                    return "/"
                return base if req_uri.endswith("/") else base[:-1]
            if postfix.startswith("/"):
                return base[:-1] + postfix
            return base + postfix
        return base + req_uri[1:]
    if strip:
        if postfix == "":
            return base + "/" if len(req_uri) > 1 and req_uri.endswith("/") else base
        if postfix.startswith("/"):
            return base + postfix
        return base + "/" + postfix
    return base if req_uri == "/" else base + req_uri


# ------------------------------------------------------------------ loading


class _Loader:
    def __init__(
        self,
        validators: Mapping[str, ConfigValidator],
        ignore_plugins: set[str],
        upstream_overrides: Mapping[str, str],
    ) -> None:
        self.validators = validators
        self.ignore_plugins = ignore_plugins
        self.upstream_overrides = upstream_overrides
        self.now = int(time.time())
        self.services: dict[str, dict[str, Any]] = {}
        self.routes: list[Route] = []
        self.consumers: dict[str, dict[str, Any]] = {}
        self.credentials: dict[str, dict[str, Any]] = {}
        self.plugins: list[PluginEntity] = []
        self.pending_plugins: list[tuple[dict[str, Any], dict[str, str | None], str]] = []
        self.errors: list[str] = []

    def load(self, doc: Any, source: str) -> DeclarativeConfig:
        if not isinstance(doc, dict):
            raise DeclarativeConfigError(f"{source}: expected a YAML mapping at top level")
        version = str(doc.get("_format_version", ""))
        if version not in ("3.0", "2.1", "1.1"):
            raise DeclarativeConfigError(f"{source}: _format_version must be \"3.0\" (got {version!r})")
        unknown = set(doc) - _TOP_LEVEL_KEYS
        if unknown:
            raise DeclarativeConfigError(f"{source}: unknown top-level keys {sorted(unknown)}")
        for svc in doc.get("services") or []:
            self._service(svc)
        for route in doc.get("routes") or []:
            self._route(route, None, "routes")
        for consumer in doc.get("consumers") or []:
            self._consumer(consumer)
        for cred in doc.get("keyauth_credentials") or []:
            self._keyauth(cred, None)
        for plugin in doc.get("plugins") or []:
            self.pending_plugins.append((plugin, {}, "plugins"))
        for raw, scope, where in self.pending_plugins:
            self._plugin(raw, scope, where)
        if self.errors:
            raise DeclarativeConfigError(f"{source}: declarative config is invalid:\n  - " + "\n  - ".join(self.errors))
        return DeclarativeConfig(
            services=self.services,
            routes=self.routes,
            consumers=self.consumers,
            credentials=self.credentials,
            plugins=self.plugins,
            source=source,
        )

    def _base(self, raw: dict[str, Any], kind: str, key: str, *, updated_at: bool = True) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": raw.get("id") or stable_id(kind, key),
            "created_at": raw.get("created_at", self.now),
        }
        if updated_at:
            record["updated_at"] = raw.get("updated_at", self.now)
        if raw.get("tags") is not None:
            record["tags"] = LuaArray(raw["tags"])
        return record

    def _service(self, raw: dict[str, Any]) -> None:
        name = raw.get("name")
        key = name or raw.get("url") or raw.get("host") or str(len(self.services))
        record = self._base(raw, "service", key)
        record.update(_SERVICE_DEFAULTS)
        if raw.get("url"):
            parts = urlsplit(raw["url"])
            record["protocol"] = parts.scheme or "http"
            record["host"] = parts.hostname
            record["port"] = parts.port or (443 if parts.scheme == "https" else 80)
            if parts.path:
                record["path"] = parts.path
        for attr in ("protocol", "host", "port", "path", "retries", "connect_timeout", "write_timeout",
                     "read_timeout", "enabled", "tls_verify"):  # fmt: skip
            if attr in raw and raw[attr] is not None:
                record[attr] = raw[attr]
        record.setdefault("port", 443 if record["protocol"] == "https" else 80)
        if name:
            record["name"] = name
        if not record.get("host"):
            self.errors.append(f"service {key!r}: host: required field missing")
            return
        override = self.upstream_overrides.get(name or "") or self.upstream_overrides.get(record["id"])
        if override:
            # Point the service somewhere local but keep its path (what tests
            # do instead of DNS tricks).
            parts = urlsplit(override)
            record["protocol"] = parts.scheme or "http"
            record["host"] = parts.hostname
            record["port"] = parts.port or 80
            if parts.path and parts.path != "/":
                record["path"] = parts.path
        record["ws_id"] = DEFAULT_WORKSPACE_ID
        self.services[record["id"]] = record
        for route in raw.get("routes") or []:
            self._route(route, record, f"services.{key}.routes")
        for plugin in raw.get("plugins") or []:
            self.pending_plugins.append((plugin, {"service_id": record["id"]}, f"services.{key}.plugins"))

    def _route(self, raw: dict[str, Any], service: dict[str, Any] | None, where: str) -> None:
        if service is None and raw.get("service") is not None:
            ref = raw["service"]
            ref = ref.get("id") or ref.get("name") if isinstance(ref, dict) else ref
            service = next((s for s in self.services.values() if ref in (s.get("name"), s["id"])), None)
            if service is None:
                self.errors.append(f"{where}: route references unknown service {ref!r}")
                return
        name = raw.get("name")
        key = name or f"{service['id'] if service else '-'}:{len(self.routes)}"
        unsupported = [a for a in ("expression", "sources", "destinations", "snis") if raw.get(a)]
        if unsupported:
            self.errors.append(f"{where}: route {key!r}: the harness router does not support {unsupported}")
            return
        record = self._base(raw, "route", key)
        record.update({k: (LuaArray(v) if isinstance(v, list) else v) for k, v in _ROUTE_DEFAULTS.items()})
        for attr in ("protocols", "methods", "hosts", "paths", "headers", "snis", "strip_path", "preserve_host",
                     "regex_priority", "path_handling", "https_redirect_status_code", "request_buffering",
                     "response_buffering"):  # fmt: skip
            if attr in raw and raw[attr] is not None:
                record[attr] = LuaArray(raw[attr]) if isinstance(raw[attr], list) else raw[attr]
        if record.get("methods"):
            record["methods"] = LuaArray(m.upper() for m in record["methods"])
        if name:
            record["name"] = name
        if service is not None:
            record["service"] = {"id": service["id"]}
        record["ws_id"] = DEFAULT_WORKSPACE_ID
        route = Route(record=record, service_name=service.get("name") if service else None)
        for path in record.get("paths") or []:
            if path.startswith("~"):
                try:
                    route.regex_paths.append(re.compile(path[1:]))
                except re.error as exc:
                    self.errors.append(f"{where}: route {key!r}: invalid regex path {path!r}: {exc}")
            elif not path.startswith("/"):
                self.errors.append(f"{where}: route {key!r}: path {path!r} should start with: /")
            else:
                route.prefix_paths.append(path)
        self.routes.append(route)
        for plugin in raw.get("plugins") or []:
            scope = {"route_id": record["id"]}
            self.pending_plugins.append((plugin, scope, f"{where}.{key}.plugins"))

    def _consumer(self, raw: dict[str, Any]) -> None:
        username, custom_id = raw.get("username"), raw.get("custom_id")
        if not username and not custom_id:
            self.errors.append("consumers: at least one of these fields must be non-empty: 'custom_id', 'username'")
            return
        record = self._base(raw, "consumer", username or f"custom:{custom_id}")
        if username:
            record["username"] = username
        if custom_id:
            record["custom_id"] = custom_id
        self.consumers[record["id"]] = record
        for cred in raw.get("keyauth_credentials") or []:
            self._keyauth(cred, record)
        for plugin in raw.get("plugins") or []:
            scope = {"consumer_id": record["id"]}
            self.pending_plugins.append((plugin, scope, f"consumers.{username or custom_id}.plugins"))

    def _keyauth(self, raw: dict[str, Any], consumer: dict[str, Any] | None) -> None:
        if consumer is None:
            ref = raw.get("consumer")
            ref = ref.get("id") or ref.get("username") if isinstance(ref, dict) else ref
            consumer = self.consumers.get(ref) or next(
                (c for c in self.consumers.values() if c.get("username") == ref), None
            )
            if consumer is None:
                self.errors.append(f"keyauth_credentials: unknown consumer {ref!r}")
                return
        key = raw.get("key")
        if not isinstance(key, str) or not key:
            self.errors.append(f"keyauth_credentials of {consumer.get('username')!r}: key: required field missing")
            return
        if key in self.credentials:
            self.errors.append(f"keyauth_credentials: duplicate key for {consumer.get('username')!r}")
            return
        record = self._base(raw, "keyauth_credential", key, updated_at=False)  # no such field in its schema
        record["key"] = key
        record["consumer"] = {"id": consumer["id"]}
        self.credentials[key] = record

    def _plugin(self, raw: dict[str, Any], scope: dict[str, str | None], where: str) -> None:
        name = raw.get("name")
        if not isinstance(name, str):
            self.errors.append(f"{where}: name: required field missing")
            return
        unknown = set(raw) - _PLUGIN_KEYS
        if unknown:
            self.errors.append(f"{where}: plugin {name!r}: {', '.join(sorted(unknown))}: unknown field")
        scope = dict(scope)
        for kind, attr in (("route", "route_id"), ("service", "service_id"), ("consumer", "consumer_id")):
            ref = raw.get(kind)
            if ref is None:
                continue
            ref = ref.get("id") or ref.get("name") or ref.get("username") if isinstance(ref, dict) else ref
            found = self._resolve(kind, ref)
            if found is None:
                self.errors.append(f"{where}: plugin {name!r}: unknown {kind} {ref!r}")
                return
            scope[attr] = found
        if name in self.ignore_plugins:
            return
        validator = self.validators.get(name)
        if validator is None:
            self.errors.append(
                f"{where}: plugin '{name}' not enabled; add it to the 'plugins' configuration property "
                "(the harness knows only the plugin servers it was given, key-auth, and ignore_plugins)"
            )
            return
        try:
            config = validator(raw.get("config", _MISSING_CONFIG))
        except ConfigValidationError as exc:
            self.errors.append(f"{where}: plugin '{name}': {exc}")
            return
        key = ":".join(str(scope.get(k) or "") for k in ("route_id", "service_id", "consumer_id"))
        entity = PluginEntity(
            id=raw.get("id") or stable_id("plugin", f"{name}:{key}:{raw.get('instance_name') or ''}"),
            name=name,
            config=config,
            route_id=scope.get("route_id"),
            service_id=scope.get("service_id"),
            consumer_id=scope.get("consumer_id"),
            instance_name=raw.get("instance_name"),
            enabled=raw.get("enabled", True),
            protocols=list(raw.get("protocols") or ["grpc", "grpcs", "http", "https"]),
            tags=raw.get("tags"),
            ws_id=DEFAULT_WORKSPACE_ID,
        )
        clash = [p for p in self.plugins if (p.name, p.route_id, p.service_id, p.consumer_id)
                 == (name, entity.route_id, entity.service_id, entity.consumer_id)]  # fmt: skip
        if clash:
            self.errors.append(f"{where}: plugin '{name}' is configured twice for the same route/service/consumer")
            return
        self.plugins.append(entity)

    def _resolve(self, kind: str, ref: Any) -> str | None:
        if kind == "service":
            return next((s["id"] for s in self.services.values() if ref in (s.get("name"), s["id"])), None)
        if kind == "route":
            return next((r.id for r in self.routes if ref in (r.name, r.id)), None)
        return next((c["id"] for c in self.consumers.values() if ref in (c.get("username"), c["id"])), None)


def load_declarative_config(
    source: str | Path | Mapping[str, Any],
    *,
    validators: Mapping[str, ConfigValidator],
    ignore_plugins: set[str] | frozenset[str] = frozenset(),
    upstream_overrides: Mapping[str, str] | None = None,
) -> DeclarativeConfig:
    """Parse kong.yml (a path, YAML text or an already-loaded mapping)."""
    if isinstance(source, Mapping):
        doc, label = dict(source), "<dict>"
    else:
        path = Path(source)
        if isinstance(source, Path) or (len(str(source)) < 4096 and "\n" not in str(source) and path.exists()):
            text, label = path.read_text(), str(path)
        else:
            text, label = str(source), "<yaml>"
        doc = yaml.safe_load(text)
    loader = _Loader(validators, set(ignore_plugins), upstream_overrides or {})
    return loader.load(doc, label)
