"""Containers of the compose stack, started one by one for tests (same images, same configs).

The ClickHouse image is read from docker-compose.yml so the tests and `make up`
run the same server; the other images are built from deploy/*/Dockerfile.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ai_chargeback_aggregator.store.clickhouse import Store

ROOT = Path(__file__).resolve().parents[2]
CH_USER = "chargeback"
CH_PASSWORD = "test-" + uuid.uuid4().hex[:12]
CLUSTER_NAME = "chargeback"  # deploy/clickhouse/cluster-one-node.xml
CLUSTER_CONFIG = ROOT / "deploy" / "clickhouse" / "cluster-one-node.xml"
# The read-only users (analyst SQL, Grafana) and the access rules, as docker-compose.yml mounts them.
READ_ONLY_USERS = ROOT / "deploy" / "clickhouse" / "users.d" / "chargeback-readonly.xml"
ACCESS_CONTROL = ROOT / "deploy" / "clickhouse" / "config.d" / "access-control.xml"
ANALYST_USER, ANALYST_PASSWORD = "chargeback_analyst", "analyst-" + uuid.uuid4().hex[:12]
GRAFANA_USER, GRAFANA_PASSWORD = "grafana", "grafana-" + uuid.uuid4().hex[:12]


def compose_image(service: str) -> str:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return str(compose["services"][service]["image"])


def build_image(name: str) -> str:
    """Build deploy/<name>/Dockerfile from the repository root; returns the tag."""
    from testcontainers.core.image import DockerImage

    tag = f"ai-chargeback-test/{name}:{uuid.uuid4().hex[:8]}"
    DockerImage(path=str(ROOT), dockerfile_path=f"deploy/{name}/Dockerfile", tag=tag, clean_up=False).build()
    return tag


def clickhouse(*, cluster: bool = False, network: Any = None, alias: str = "clickhouse") -> Any:
    """A ClickHouse server container (not started), single-node or a one-node cluster with embedded Keeper."""
    import docker
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    container = (
        DockerContainer(compose_image("clickhouse"))
        .with_env("CLICKHOUSE_USER", CH_USER)
        .with_env("CLICKHOUSE_PASSWORD", CH_PASSWORD)
        .with_env("ANALYST_CLICKHOUSE_PASSWORD", ANALYST_PASSWORD)
        .with_env("GRAFANA_CLICKHOUSE_PASSWORD", GRAFANA_PASSWORD)
        .with_copy_into_container(READ_ONLY_USERS, "/etc/clickhouse-server/users.d/chargeback-readonly.xml")
        .with_copy_into_container(ACCESS_CONTROL, "/etc/clickhouse-server/config.d/access-control.xml")
        .with_exposed_ports(8123)
        .with_kwargs(ulimits=[docker.types.Ulimit(name="nofile", soft=262144, hard=262144)])
        .waiting_for(HttpWaitStrategy(8123, "/ping").for_status_code(200).with_startup_timeout(180))
    )
    if cluster:
        container.with_copy_into_container(CLUSTER_CONFIG, "/etc/clickhouse-server/config.d/cluster.xml")
    if network is not None:
        container.with_network(network).with_network_aliases(alias)
    return container


def dsn(container: Any, user: str = CH_USER, password: str = CH_PASSWORD) -> str:
    return f"http://{user}:{password}@{container.get_container_host_ip()}:{container.get_exposed_port(8123)}"


def wait_until(check: Callable[[], Any], *, timeout_s: float, what: str, every_s: float = 0.25) -> Any:
    """Poll until `check()` returns a truthy value without raising; that value is returned."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # not ready yet
            last = exc
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}" + (f": {last}" if last else ""))


def wait_for_keeper(container: Any) -> None:
    """Replicated tables and ON CLUSTER DDL need Keeper; it elects itself a moment after /ping answers."""
    store = Store(dsn(container), database="system")
    try:
        wait_until(lambda: store.query("SELECT count() FROM system.zookeeper WHERE path = '/'")[1][0][0] >= 0,
                   timeout_s=120, what="ClickHouse Keeper")  # fmt: skip
    finally:
        store.close()


def unique_database(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def container_logs(*containers: Any) -> str:
    parts = []
    for container in containers:
        try:
            out, err = container.get_logs()
            text = (out + err).decode(errors="replace")
            parts.append(f"----- {container.image} -----\n{text[-6000:]}")
        except Exception as exc:
            parts.append(f"----- {getattr(container, 'image', '?')}: no logs ({exc}) -----")
    return "\n".join(parts)


@contextmanager
def logs_on_failure(*containers: Any) -> Iterator[None]:
    """Re-raise a failure with the containers' last log lines attached: a CI run is all we will see."""
    try:
        yield
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n\n{container_logs(*containers)}") from exc


def http_port_of(listen: str) -> int:
    match = re.fullmatch(r".*:(\d+)", listen)
    assert match, listen
    return int(match.group(1))
