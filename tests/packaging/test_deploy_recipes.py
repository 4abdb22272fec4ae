"""The container recipes agree with Kong, with the plugin and with each other (no Docker needed).

The Kong image's pluginserver settings are read out of deploy/kong/Dockerfile
and run here as written (only the install prefix is remapped to this venv):
the query command must print what Kong parses, and the start command must
listen on exactly the socket Kong was told to dial. docker-compose.yml and
the generated Kong config are checked against the files they name.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET  # noqa: N817 (a repository file, not input)
from pathlib import Path
from typing import Any

import pytest
import yaml
from kong_harness import MsgpackRpcClient, validate_plugin_config

from ai_chargeback_aggregator.store.read_session import ANALYST_LIMITS

ROOT = Path(__file__).resolve().parents[2]
KONG_DOCKERFILE = ROOT / "deploy" / "kong" / "Dockerfile"
VENV_IN_IMAGE = "/opt/ai-chargeback/bin/"
KONG_PREFIX_IN_IMAGE = "/usr/local/kong"


def dockerfile_env(path: Path) -> dict[str, str]:
    """ENV instructions of a Dockerfile (key=value form, with line continuations)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(item.split("=", 1) for item in shlex.split(line[4:]))  # type: ignore[arg-type]
    return env


def dockerfile_from(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.MULTILINE))
    return [re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image) for image in re.findall(r"^FROM (\S+)", text, re.MULTILINE)]


@pytest.fixture(scope="module")
def kong_env() -> dict[str, str]:
    return dockerfile_env(KONG_DOCKERFILE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def local(command: str, prefix: Path) -> list[str]:
    """An image command line, run from this venv with the Kong prefix moved to `prefix`."""
    argv = shlex.split(command)
    argv[0] = str(Path(sys.executable).parent / argv[0].removeprefix(VENV_IN_IMAGE))
    return [str(prefix) if a == KONG_PREFIX_IN_IMAGE else a for a in argv]


# -- the Kong image ----------------------------------------------------------------------------


def test_kong_image_is_the_official_3x_with_a_python_venv() -> None:
    images = dockerfile_from(KONG_DOCKERFILE)
    assert re.fullmatch(r"kong:3\.\d+(\.\d+)?", images[-1]), f"pin an official 3.x tag, got {images[-1]}"
    text = KONG_DOCKERFILE.read_text(encoding="utf-8")
    assert "python3 -m venv /opt/ai-chargeback" in text
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    installs = re.findall(r"pip install [^;\n]*", code)
    assert installs and not any("[" in i for i in installs), "the gateway gets the plugin's base install only"
    assert text.rstrip().endswith("USER kong"), "Kong runs as its own user, as in the official image"


def test_pluginserver_settings_use_the_names_kong_derives(kong_env: dict[str, str]) -> None:
    assert kong_env["KONG_PLUGINS"].split(",") == ["bundled", "ai-chargeback", "ai-chargeback-log"]
    names = kong_env["KONG_PLUGINSERVER_NAMES"].split(",")
    assert names == ["ai-chargeback", "ai-chargeback-log"]
    # kong/conf_loader/init.lua: env_prefix = "pluginserver_" .. name:gsub("-", "_")
    prefix = "KONG_PLUGINSERVER_" + names[0].replace("-", "_").upper()
    assert {f"{prefix}_SOCKET", f"{prefix}_START_CMD", f"{prefix}_QUERY_CMD"} <= kong_env.keys()
    start = shlex.split(kong_env[f"{prefix}_START_CMD"])
    assert {"-g", "--no-lua-style"} <= set(start)
    socket_dir, socket_name = kong_env[f"{prefix}_SOCKET"].rsplit("/", 1)
    assert start[start.index("-p") + 1] == socket_dir == KONG_PREFIX_IN_IMAGE
    assert start[start.index("--socket-name") + 1] == socket_name
    assert shlex.split(kong_env[f"{prefix}_QUERY_CMD"])[1:] == ["--dump"]
    # The log-only plugin: same process and socket, its own query command, no start command (one process).
    log_prefix = "KONG_PLUGINSERVER_" + names[1].replace("-", "_").upper()
    assert kong_env[f"{log_prefix}_SOCKET"] == kong_env[f"{prefix}_SOCKET"]
    assert f"{log_prefix}_START_CMD" not in kong_env
    log_query = shlex.split(kong_env[f"{log_prefix}_QUERY_CMD"])
    assert log_query[0] == shlex.split(kong_env[f"{prefix}_QUERY_CMD"])[0] and log_query[1:] == ["--dump", "--plugin", names[1]]


def test_query_command_prints_one_plugin_info_document(kong_env: dict[str, str], tmp_path: Path) -> None:
    run = subprocess.run(local(kong_env["KONG_PLUGINSERVER_AI_CHARGEBACK_QUERY_CMD"], tmp_path),
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    (info,) = json.loads(run.stdout)
    assert info["Name"] == "ai-chargeback"
    run = subprocess.run(local(kong_env["KONG_PLUGINSERVER_AI_CHARGEBACK_LOG_QUERY_CMD"], tmp_path),
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    (info,) = json.loads(run.stdout)
    assert (info["Name"], info["Phases"]) == ("ai-chargeback-log", ["log"])


def test_start_command_listens_where_kong_dials_and_starts_an_instance(kong_env: dict[str, str], tmp_path: Path) -> None:
    socket = Path(kong_env["KONG_PLUGINSERVER_AI_CHARGEBACK_SOCKET"].replace(KONG_PREFIX_IN_IMAGE, str(tmp_path), 1))
    log = (tmp_path / "pluginserver.log").open("wb")
    server = subprocess.Popen(local(kong_env["KONG_PLUGINSERVER_AI_CHARGEBACK_START_CMD"], tmp_path), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert server.poll() is None, (tmp_path / "pluginserver.log").read_text()
            assert time.monotonic() < deadline, "no socket at the path Kong dials"
            time.sleep(0.05)
        client = MsgpackRpcClient(str(socket), timeout=10)
        config = json.dumps({"aggregator_addresses": ["127.0.0.1:9"], "spool_dir": "", "__key__": "k", "__seq__": 1})
        for name in ("ai-chargeback", "ai-chargeback-log"):  # both plugins, one socket
            started = client.call("plugin.StartInstance", {"Name": name, "Config": config})
            assert started["Name"] == name and isinstance(started["Id"], int)
            client.call("plugin.CloseInstance", started["Id"])
        client.close()
    finally:
        server.terminate()
        server.wait(10)
        log.close()


# -- compose -----------------------------------------------------------------------------------


def test_compose_kong_config_is_current_with_kong_yml() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "deploy/kong/render_compose_config.py"), "--check"],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr


def test_compose_kong_config_keeps_kong_yml_and_retargets_only_upstreams(compose: dict[str, Any], tmp_path: Path) -> None:
    source = yaml.safe_load((ROOT / "kong.yml").read_text(encoding="utf-8"))
    generated = yaml.safe_load((ROOT / "deploy/kong/kong.compose.yml").read_text(encoding="utf-8"))
    assert generated["consumers"] == source["consumers"]
    assert [s["routes"] for s in generated["services"]] == [s["routes"] for s in source["services"]]
    mock_docker = (ROOT / "deploy/mock-llm/Dockerfile").read_text(encoding="utf-8")
    (mock_port,) = re.findall(r"^EXPOSE (\d+)", mock_docker, re.MULTILINE)
    assert f'"--port", "{mock_port}"' in mock_docker
    assert {s["url"] for s in generated["services"]} == {f"http://mock-llm:{mock_port}"}

    dump = subprocess.run([sys.executable, "-m", "ai_chargeback_plugin.server", "--dump"],
                          capture_output=True, text=True, check=True, cwd=tmp_path)  # fmt: skip
    schema = json.loads(dump.stdout)[0]["Schema"]
    aggregator_env = dockerfile_env(ROOT / "deploy/aggregator/Dockerfile")
    grpc_port = aggregator_env["CHARGEBACK_GRPC_LISTEN"].rsplit(":", 1)[1]
    log_dump = subprocess.run([sys.executable, "-m", "ai_chargeback_plugin.server", "--dump", "--plugin", "ai-chargeback-log"],
                              capture_output=True, text=True, check=True, cwd=tmp_path)  # fmt: skip
    schemas = {"ai-chargeback": schema, "ai-chargeback-log": json.loads(log_dump.stdout)[0]["Schema"]}
    blocks = [(p["name"], p["config"]) for s in generated["services"] for p in s["plugins"] if p["name"] in schemas]
    assert sorted(name for name, _ in blocks) == ["ai-chargeback"] * 3 + ["ai-chargeback-log"]
    for name, block in blocks:
        filled = validate_plugin_config(schemas[name], block)  # Kong validates kong.yml the same way
        assert filled["aggregator_addresses"] == [f"aggregator:{grpc_port}"]


def test_compose_kong_has_every_vault_variable_and_ai_proxy_calls_the_mock(compose: dict[str, Any]) -> None:
    text = (ROOT / "deploy/kong/kong.compose.yml").read_text(encoding="utf-8")
    referenced = {name.upper().replace("-", "_") for name in re.findall(r"\{vault://env/([A-Za-z0-9_-]+)\}", text)}
    assert referenced >= {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
    assert referenced <= set(compose["services"]["kong"]["environment"]), "Kong's env vault would resolve nothing"
    generated = yaml.safe_load(text)
    proxies = [p["config"] for s in generated["services"] for p in s["plugins"] if p["name"] == "ai-proxy"]
    assert proxies and all(c["model"]["options"]["upstream_url"].startswith("http://mock-llm:") for c in proxies)


def test_compose_services_build_from_the_recipes_and_mount_files_that_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kong", "aggregator", "clickhouse", "mock-llm", "grafana"} <= services.keys()
    for name, service in services.items():
        if "build" in service:
            assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        else:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    major = int(services["clickhouse"]["image"].rsplit(":", 1)[1].split(".")[0])
    assert major >= 24, "a current ClickHouse server, not a distribution's old package"

    kong = services["kong"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in kong["volumes"]}
    assert mounted[kong["environment"]["KONG_DECLARATIVE_CONFIG"]] == "./deploy/kong/kong.compose.yml"
    assert kong["environment"]["KONG_DATABASE"] == "off"
    dsn = services["aggregator"]["environment"]["CHARGEBACK_STORE_DSN"]
    assert re.fullmatch(r"http://chargeback:\$\{CLICKHOUSE_PASSWORD:-[^}]+\}@clickhouse:8123", dsn)
    assert services["clickhouse"]["environment"]["CLICKHOUSE_USER"] == "chargeback"


def test_grafana_is_provisioned_with_the_dashboard_and_a_read_only_datasource(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_PLUGINS_PREINSTALL_SYNC"]
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/clickhouse.yml").read_text())
    (ds,) = datasource["datasources"]
    assert ds["type"] == "grafana-clickhouse-datasource" and ds["jsonData"]["username"] == "grafana"
    assert ds["secureJsonData"]["password"] == "$GRAFANA_CLICKHOUSE_PASSWORD" and "GRAFANA_CLICKHOUSE_PASSWORD" in grafana["environment"]
    users = read_only_users()
    assert users["grafana"]["profile"] == "chargeback_readonly" and users["grafana"]["password_from_env"] == "GRAFANA_CLICKHOUSE_PASSWORD"


READ_ONLY_USERS = ROOT / "deploy/clickhouse/users.d/chargeback-readonly.xml"


def read_only_users() -> dict[str, dict[str, Any]]:
    root = ET.parse(READ_ONLY_USERS).getroot()
    return {
        user.tag: {"profile": user.findtext("profile"), "password_from_env": user.find("password").get("from_env"),
                   "grants": [q.text for q in user.findall("grants/query")]}
        for user in root.find("users")
    }  # fmt: skip


def test_the_read_only_profile_states_the_aggregators_limits_as_constraints() -> None:
    """One set of limits: the embedded store's (ANALYST_LIMITS) are the server profile's, fixed by constraints."""
    profile = ET.parse(READ_ONLY_USERS).getroot().find("profiles/chargeback_readonly")
    assert profile is not None and profile.findtext("readonly") == "1"
    for name, value in ANALYST_LIMITS.items():
        assert profile.findtext(name) == str(value), name
        constraint = profile.find(f"constraints/{name}")
        assert constraint is not None, f"{name}: a limit without a constraint can be lifted"
        if name == "max_execution_time":  # Grafana sets it on every query: within 1..the limit only
            assert (constraint.findtext("min"), constraint.findtext("max")) == ("1", str(value))
            assert constraint.find("changeable_in_readonly") is not None
        else:
            assert constraint.find("const") is not None, name
    assert profile.find("constraints/readonly/const") is not None


def test_read_only_users_may_select_from_the_chargeback_database_only(compose: dict[str, Any]) -> None:
    users = read_only_users()
    assert set(users) == {"chargeback_analyst", "grafana"}
    for name, user in users.items():
        assert user["profile"] == "chargeback_readonly", name
        assert user["grants"][0] == "GRANT SELECT ON chargeback.*", name
        assert all(re.fullmatch(r"GRANT SELECT ON system\.(settings|databases|tables|columns)", g) for g in user["grants"][1:]), name
    clickhouse = compose["services"]["clickhouse"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in clickhouse["volumes"] if v.startswith("./")}
    assert mounted["/etc/clickhouse-server/users.d/chargeback-readonly.xml"] == "./deploy/clickhouse/users.d/chargeback-readonly.xml"
    access = ET.parse(ROOT / mounted["/etc/clickhouse-server/config.d/access-control.xml"]).getroot()
    assert access.findtext("access_control_improvements/select_from_system_db_requires_grant") == "true"
    assert {"ANALYST_CLICKHOUSE_PASSWORD", "GRAFANA_CLICKHOUSE_PASSWORD"} <= clickhouse["environment"].keys()
    dsn = compose["services"]["aggregator"]["environment"]["CHARGEBACK_SQL_STORE_DSN"]
    assert re.fullmatch(r"http://chargeback_analyst:\$\{ANALYST_CLICKHOUSE_PASSWORD:-[^}]+\}@clickhouse:8123", dsn)
