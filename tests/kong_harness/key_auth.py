"""Kong's bundled key-auth plugin, re-implemented for the harness.

Behaviour follows kong/plugins/key-auth/handler.lua and schema.lua: keys
looked up by `config.key_names` in headers, then the query string (then the
body if enabled); 401 via kong.response.error with `WWW-Authenticate`;
`hide_credentials` strips the key before proxying; the consumer and
credential become visible to later plugins (kong.client.get_consumer/
get_credential) and the upstream gets the X-Consumer-* headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .context import ExitRecord, RequestContext
from .luaisms import decode_query
from .pdk import kong_error_exit

NAME = "key-auth"
PRIORITY = 1250

_HEADER_NAME_RE = re.compile(r"^[a-zA-Z0-9\-_]+$")


def _validate_header_name(name: str) -> tuple[bool, str | None]:
    # kong.tools.http.validate_header_name
    if name == "":
        return False, "no header name provided"
    if _HEADER_NAME_RE.match(name):
        return True, None
    return False, f"bad header name '{name}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"


SCHEMA: dict[str, Any] = {
    "name": NAME,
    "fields": [
        {
            "config": {
                "type": "record",
                "fields": [
                    {
                        "key_names": {
                            "type": "array",
                            "required": True,
                            "elements": {"type": "string", "custom_validator": _validate_header_name},
                            "default": ["apikey"],
                        }
                    },
                    {"hide_credentials": {"type": "boolean", "required": True, "default": False}},
                    {"anonymous": {"type": "string"}},
                    {"key_in_header": {"type": "boolean", "required": True, "default": True}},
                    {"key_in_query": {"type": "boolean", "required": True, "default": True}},
                    {"key_in_body": {"type": "boolean", "required": True, "default": False}},
                    {"run_on_preflight": {"type": "boolean", "required": True, "default": True}},
                    {"realm": {"type": "string", "required": False}},
                ],
            }
        }
    ],
}

ERR_DUPLICATE_API_KEY = "Duplicate API key found"
ERR_NO_API_KEY = "No API key found in request"
ERR_INVALID_AUTH_CRED = "Unauthorized"


class KeyAuth:
    def __init__(
        self,
        credentials: dict[str, dict[str, Any]],
        find_consumer: Callable[[str, bool], dict[str, Any] | None],
    ) -> None:
        self.credentials = credentials
        self.find_consumer = find_consumer

    def access(self, ctx: RequestContext, conf: dict[str, Any]) -> ExitRecord | None:
        if not conf["run_on_preflight"] and ctx.method == "OPTIONS":
            return None
        failure = self._authenticate(ctx, conf)
        if failure is None:
            return None
        if conf.get("anonymous"):
            # logical OR: fall back to the anonymous consumer
            if ctx.credential is not None:
                return None
            consumer = self.find_consumer(conf["anonymous"], True)
            if consumer is None:
                message = f"anonymous consumer {conf['anonymous']} is configured but doesn't exist"
                return kong_error_exit(ctx, 500, message, None, source=NAME, phase="access")
            self._set_consumer(ctx, consumer, None)
            return None
        status, message, headers = failure
        return kong_error_exit(ctx, status, message, headers, source=NAME, phase="access")

    def _authenticate(self, ctx: RequestContext, conf: dict[str, Any]) -> tuple[int, str, dict[str, str]] | None:
        realm = conf.get("realm")
        www_authenticate = f'Key realm="{realm}"' if realm else "Key"
        headers = ctx.headers.multimap()
        query = decode_query(ctx.raw_query)
        body: dict[str, Any] | None = None
        key = None
        for name in conf["key_names"]:
            value: Any = None
            if conf["key_in_header"]:
                values = headers.get(name.lower().replace("_", "-"))
                if values:
                    value = values[0] if len(values) == 1 else values
            if value is None and conf["key_in_query"]:
                value = query.get(name)
            if value is None and conf["key_in_body"]:
                if body is None:
                    body = self._body(ctx)
                value = body.get(name)
            if isinstance(value, str):
                key = value
                if conf["hide_credentials"]:
                    self._hide(ctx, name, query)
                break
            if isinstance(value, list):
                return 401, ERR_DUPLICATE_API_KEY, {"WWW-Authenticate": www_authenticate}
        if not key:
            return 401, ERR_NO_API_KEY, {"WWW-Authenticate": www_authenticate}
        credential = self.credentials.get(key)
        if credential is None:
            return 401, ERR_INVALID_AUTH_CRED, {"WWW-Authenticate": www_authenticate}
        consumer = self.find_consumer(credential["consumer"]["id"], False)
        self._set_consumer(ctx, consumer, credential)
        return None

    @staticmethod
    def _body(ctx: RequestContext) -> dict[str, Any]:
        content_type = (ctx.headers.first("content-type") or "").lower()
        try:
            if "application/json" in content_type:
                parsed = json.loads(ctx.body or b"{}")
                return parsed if isinstance(parsed, dict) else {}
            if "application/x-www-form-urlencoded" in content_type:
                return decode_query(ctx.body.decode("utf-8", errors="replace"))
        except ValueError:
            pass
        return {}

    @staticmethod
    def _hide(ctx: RequestContext, name: str, query: dict[str, Any]) -> None:
        # kong.service.request.clear_query_arg + clear_header
        ctx.headers.remove(name)
        if name in query:
            kept = [part for part in ctx.raw_query.split("&") if part and part.split("=", 1)[0] != name]
            ctx.args_override = "&".join(kept)

    @staticmethod
    def _set_consumer(ctx: RequestContext, consumer: dict[str, Any] | None, credential: dict[str, Any] | None) -> None:
        # kong.client.authenticate + the X-Consumer-* upstream headers
        ctx.consumer = consumer
        ctx.credential = credential
        headers = ctx.headers
        for header, value in (
            ("X-Consumer-ID", consumer and consumer.get("id")),
            ("X-Consumer-Custom-ID", consumer and consumer.get("custom_id")),
            ("X-Consumer-Username", consumer and consumer.get("username")),
            ("X-Credential-Identifier", credential and credential.get("id")),
        ):
            if value:
                headers.set(header, value)
            else:
                headers.remove(header)
        if credential is not None:
            headers.remove("X-Anonymous-Consumer")
        else:
            headers.set("X-Anonymous-Consumer", "true")
