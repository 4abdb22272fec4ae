"""Helpers for the harness's own tests (probe scripts, kong.yml builders, HTTP)."""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROBE_PLUGIN = Path(__file__).resolve().parent / "probe_plugin.py"


def probe_headers(probe_id: str | None = None, **phases: list[list[Any]]) -> dict[str, str]:
    """Headers that make the probe plugin run `phase=[[method, args], ...]`."""
    headers = {"x-probe-id": probe_id or uuid.uuid4().hex}
    for phase, steps in phases.items():
        headers[f"x-probe-{phase}"] = json.dumps(steps)
    return headers


def read_report(report_dir: Path, probe_id: str, phase: str) -> list[dict[str, Any]]:
    return json.loads((report_dir / f"{probe_id}.{phase}.json").read_text())


def decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"__bytes__"}:
        return base64.b64decode(value["__bytes__"])
    return value


def probe_kong_yml(report_dir: Path, *, plugin: str = "probe", key_auth: bool = False,
                   extra_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    plugins: list[dict[str, Any]] = []
    if key_auth:
        plugins.append({"name": "key-auth", "config": {"hide_credentials": False}})
    plugins.append({"name": plugin, "config": {"report_dir": str(report_dir), **(extra_config or {})}})
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "llm",
                "url": "https://api.openai.com/base",
                "tags": ["tenant:acme", "svc"],
                "routes": [{"name": "chat", "paths": ["/llm"], "tags": ["route-tag"]}],
                "plugins": plugins,
            }
        ],
        "consumers": [
            {
                "username": "alice",
                "custom_id": "team-a",
                "tags": ["team:a"],
                "keyauth_credentials": [{"key": "alice-key"}],
            }
        ],
    }


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


def request(base_url: str, method: str, path: str, *, body: bytes | str | dict | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 20.0) -> Response:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    payload: bytes | None
    hdrs = dict(headers or {})
    if isinstance(body, dict):
        payload = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        payload = body.encode()
    else:
        payload = body
    try:
        conn.request(method, path, body=payload, headers=hdrs)
        resp = conn.getresponse()
        return Response(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


def chat_body(text: str = "Hello there, how are you?", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}
