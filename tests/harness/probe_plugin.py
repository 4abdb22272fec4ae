"""A scriptable kong-pdk plugin used to test the harness against a real server.

Each phase reads the request header `x-probe-<phase>`: a JSON list of steps
`[method, args]`, e.g. `[["kong.request.get_header", ["x-team"]]]`. Results go
to `<report_dir>/<x-probe-id>.<phase>.json`. Special steps: `["exit", [...]]`
calls kong.response.exit and stops, `["error", [...]]` kong.response.error,
`["raise", []]` raises inside the handler (kong-pdk then never answers),
`["sleep", [seconds]]`. An argument `{"__bytes__": "<base64>"}` is passed as bytes.

Env: PROBE_NAME (plugin name, default "probe"), PROBE_PHASES (comma list,
default "access,log"). Every instance appends its config to
`<report_dir>/instances.jsonl`.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from kong_pdk.cli import start_dedicated_server

NAME = os.environ.get("PROBE_NAME", "probe")
PHASES = [p for p in os.environ.get("PROBE_PHASES", "access,log").split(",") if p]
version = "1.2.3"
priority = 900

Schema = (
    {"report_dir": {"type": "string", "required": True}},
    {"mode": {"type": "string", "default": "script", "one_of": ["script", "quiet"]}},
    {
        "limits": {
            "type": "record",
            "required": True,
            "fields": [
                {"max_steps": {"type": "integer", "default": 50, "between": [1, 1000]}},
                {"labels": {"type": "array", "elements": {"type": "string"}, "default": ["a"]}},
            ],
        }
    },
    {"note": {"type": "string"}},
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _decode_args(args: list[Any]) -> list[Any]:
    # JSON cannot carry bytes: {"__bytes__": base64} stands for a bytes value.
    return [
        base64.b64decode(a["__bytes__"]) if isinstance(a, dict) and set(a) == {"__bytes__"} else a for a in args
    ]


def _resolve(kong: Any, dotted: str) -> Any:
    target = kong
    for part in dotted.split(".")[1:]:
        target = getattr(target, part)
    return target


class _Base:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        Path(config["report_dir"]).mkdir(parents=True, exist_ok=True)
        with open(Path(config["report_dir"]) / "instances.jsonl", "a") as fh:
            fh.write(json.dumps(config) + "\n")

    def _run(self, kong: Any, phase: str) -> None:
        probe_id = kong.request.get_header("x-probe-id")
        script = kong.request.get_header(f"x-probe-{phase}")
        if isinstance(probe_id, tuple):  # lua-style servers return (data, err)
            probe_id, script = probe_id[0], script[0]
        steps = json.loads(script) if script else []
        results: list[dict[str, Any]] = []
        try:
            for method, args in steps:
                if method == "raise":
                    raise RuntimeError("probe raised on purpose")
                if method == "sleep":
                    time.sleep(args[0])
                    continue
                if method in ("exit", "error"):
                    results.append({"method": method, "args": args})
                    self._report(probe_id, phase, results)
                    _resolve(kong, f"kong.response.{method}")(*args)
                    return
                try:
                    value = _resolve(kong, method)(*_decode_args(args))
                    results.append({"method": method, "value": _jsonable(value), "type": type(value).__name__})
                except Exception as exc:  # PDKException in --no-lua-style mode
                    results.append({"method": method, "exception": f"{type(exc).__name__}: {exc}"})
        finally:
            self._report(probe_id, phase, results)

    def _report(self, probe_id: Any, phase: str, results: list[dict[str, Any]]) -> None:
        if not probe_id:
            return
        path = Path(self.config["report_dir"]) / f"{probe_id}.{phase}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results))
        tmp.replace(path)


def _make_plugin_class() -> type:
    namespace: dict[str, Any] = {}
    for phase in PHASES:
        namespace[phase] = lambda self, kong, _phase=phase: self._run(kong, _phase)
    return type("Plugin", (_Base,), namespace)


Plugin = _make_plugin_class()


if __name__ == "__main__":
    start_dedicated_server(NAME, Plugin, version, priority, list(Schema))
