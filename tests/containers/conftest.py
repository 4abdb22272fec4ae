"""Container tests: real ClickHouse server and real Kong images, through testcontainers.

Every test here is marked `docker` and skipped, with the reason, when no Docker
daemon answers a ping (a docker CLI without an engine is not enough).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def docker_daemon() -> None:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
    except Exception as exc:  # no socket, no permission, no engine: all mean "cannot run here"
        pytest.skip(f"no Docker daemon reachable ({type(exc).__name__}: {exc}); these tests run where Docker is")


# Module-scoped container fixtures must also request `docker_daemon` themselves:
# they are set up before this function-scoped one.
@pytest.fixture(autouse=True)
def _needs_docker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_daemon")
