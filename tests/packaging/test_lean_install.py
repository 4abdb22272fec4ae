"""The plugin's install is the plugin's role only: nothing of the aggregator may be imported by it.

Kong nodes install ``kong-ai-chargeback-plugin`` (+ the wire contract) and nothing else (deploy/kong/Dockerfile).
If a plugin module imported pydantic or clickhouse_connect, the gateway's
query command (``--dump``) would crash at Kong start-up. These tests run in
subprocesses so this test process's own imports cannot hide a leak.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Top-level modules only the aggregator's distribution brings, plus our own aggregator package.
AGGREGATOR_ONLY = (
    "clickhouse_connect", "chdb", "chdb_core", "genai_prices", "pydantic", "pydantic_core", "pydantic_settings",
    "pyarrow", "prometheus_client", "yaml", "pandas", "numpy", "grpc_health", "ai_chargeback_aggregator",
)  # fmt: skip
# grpcio itself imports grpc_health when it happens to be installed (grpc/__init__.py,
# in a try/except ImportError), so its presence in sys.modules is not our import.
OPTIONAL_FOR_GRPC = ("grpc_health",)
# What `pip install kong-ai-chargeback-plugin` may pull (plugin/pyproject.toml dependencies).
BASE_REQUIREMENTS = {"kong-ai-chargeback-proto", "kong-pdk", "grpcio", "protobuf", "brotli", "toktok-rs", "python-json-logger"}
UV = ROOT / ".tools" / "bin" / "uv"  # make install puts it there (tools/uv-requirements.txt)

# Makes any aggregator-only import fail, as in a lean install.
BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = {AGGREGATOR_ONLY!r}
    class Lean(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"{{name}} is not part of the base install")
            return None
    sys.meta_path.insert(0, Lean())
    """
)


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_plugin_modules_import_nothing_from_the_aggregator_extra() -> None:
    code = textwrap.dedent(
        """
        import importlib, json, pkgutil, sys
        import ai_chargeback_plugin as plugin
        import ai_chargeback_plugin.handler, ai_chargeback_plugin.server
        for info in pkgutil.walk_packages(plugin.__path__, plugin.__name__ + "."):
            importlib.import_module(info.name)
        print(json.dumps(sorted(sys.modules)))
        """
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "ai_chargeback_plugin.handler" in loaded and "grpc" in loaded
    checked = [b for b in AGGREGATOR_ONLY if b not in OPTIONAL_FOR_GRPC]
    leaked = sorted(m for m in loaded if any(m == b or m.startswith(b + ".") for b in checked))
    assert leaked == [], f"the plugin imports aggregator-only modules: {leaked}"


def test_query_command_works_without_the_aggregator_extra(tmp_path: Path) -> None:
    """What Kong runs at start-up (`_query_cmd`), with every aggregator-only module unimportable."""
    # A script file, as the console script is: kong-pdk stats sys.path[0] (empty under -c).
    script = tmp_path / "ai_chargeback_pluginserver.py"
    script.write_text(BLOCKER + "from ai_chargeback_plugin.server import main\nmain()\n", encoding="utf-8")
    result = subprocess.run([sys.executable, str(script), "--dump"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    (info,) = json.loads(result.stdout)  # stdout must be exactly one JSON document (Kong's cjson.decode)
    assert info["Name"] == "ai-chargeback" and set(info["Phases"]) == {"access", "log"}
    assert info["Schema"]["fields"][0]["config"]["type"] == "record"


def test_plugin_starts_its_sender_without_the_aggregator_extra() -> None:
    """Constructing the plugin starts its sender (gRPC): all of that must stay lean too."""
    code = BLOCKER + textwrap.dedent(
        """
        try:
            import pydantic
            raise SystemExit("the blocker is not working")
        except ImportError:
            pass
        from ai_chargeback_plugin.handler import Plugin
        plugin = Plugin({"aggregator_addresses": ["127.0.0.1:9"], "spool_dir": ""})
        assert plugin.config is not None and plugin.sender is not None
        plugin.sender.close()
        print("ok")
        """
    )
    result = _python(code)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_base_requirements_are_the_plugin_role_only() -> None:
    project = tomllib.loads((ROOT / "plugin" / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in project["dependencies"]}
    assert base == BASE_REQUIREMENTS


@pytest.mark.slow
@pytest.mark.skipif(not UV.exists(), reason=f"{UV} missing: run `make install`")
def test_a_plugin_only_environment_answers_the_query_command(tmp_path: Path) -> None:
    """The real thing: a new environment with only the plugin's distribution from uv.lock, then Kong's query command."""
    venv = tmp_path / "lean"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    sync = subprocess.run([str(UV), "sync", "--locked", "--no-dev", "--no-editable", "--package", "kong-ai-chargeback-plugin",
                           "--python", sys.executable], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)  # fmt: skip
    assert sync.returncode == 0, sync.stderr[-4000:]
    listed = subprocess.run([str(UV), "pip", "list", "--format=json", "--python", str(venv / "bin/python")],
                            capture_output=True, text=True, check=True, env=env)  # fmt: skip
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "kong-ai-chargeback-plugin" in names and "kong-pdk" in names
    assert not names & {"kong-ai-chargeback-aggregator", "clickhouse-connect", "chdb", "genai-prices", "pydantic", "pyarrow",
                        "prometheus-client"}  # fmt: skip
    dump = subprocess.run([str(venv / "bin/ai-chargeback-pluginserver"), "--dump"], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    assert json.loads(dump.stdout)[0]["Name"] == "ai-chargeback"
