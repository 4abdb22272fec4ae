"""Shared fixtures.

Harness / mock upstream section: real kong-pdk plugin servers owned by the
test, the mock LLM, and a KongFront factory whose teardown fails the test if
the harness recorded failures the test did not claim (`front.take_failures()`).
"""

from __future__ import annotations

import os
import sys

# Before anything imports grpc (it reads this once). gRPC's fork support installs atfork
# handlers that run in every child this process forks; the harness forks plugin servers
# with a preexec_fn (PR_SET_PDEATHSIG), so Python, and those handlers, run in the child
# before exec. Next to the gRPC pollers earlier tests leave running, the child's handler
# could abort it before exec ("Epoll1Poller ... epoll_wait error: Bad file descriptor",
# SIGABRT): the plugin server "exited with -6 before listening". Nothing here forks
# without exec'ing, so the handlers buy nothing. tests/harness/test_process_rpc.py proves it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent

# ---------------------------------------------------------------- harness / mock fixtures

from kong_harness import KongFront, PluginServerProcess  # noqa: E402
from support.mock_llm import MockLLM  # noqa: E402

NOOP_PLUGIN = TESTS_DIR / "support" / "noop_plugin.py"
PROBE_PLUGIN = TESTS_DIR / "harness" / "probe_plugin.py"


@pytest.fixture
def mock_llm() -> Iterator[MockLLM]:
    with MockLLM() as llm:
        yield llm


@pytest.fixture
def plugin_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., PluginServerProcess]]:
    """Start a dedicated plugin server: `factory(script_or_command, **kwargs)`.

    A str/Path is run as `python <script>`; a list is used as the command.
    Every server is stopped and reaped at teardown.
    """
    started: list[PluginServerProcess] = []

    def factory(target: str | Path | list[str], **kwargs: Any) -> PluginServerProcess:
        command = list(target) if isinstance(target, list) else [sys.executable, str(target)]
        kwargs.setdefault("prefix", tmp_path_factory.mktemp("ps"))
        server = PluginServerProcess(command, **kwargs)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def noop_plugin_server(plugin_server_factory: Callable[..., PluginServerProcess]) -> PluginServerProcess:
    return plugin_server_factory(NOOP_PLUGIN)


@pytest.fixture
def kong_front_factory() -> Iterator[Callable[..., KongFront]]:
    """`factory(kong_yml, plugin_servers, upstream_overrides, **kwargs)` -> a
    started KongFront; teardown waits for log phases and raises on unclaimed
    harness failures."""
    fronts: list[KongFront] = []

    def factory(
        kong_yml: str | Path | Mapping[str, Any],
        plugin_servers: Mapping[str, PluginServerProcess],
        upstream_overrides: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> KongFront:
        front = KongFront.from_kong_yml(kong_yml, plugin_servers, upstream_overrides, **kwargs)
        fronts.append(front)
        return front

    yield factory
    failures: list[str] = []
    for front in fronts:
        front.wait_for_logs(timeout=15)
        failures.extend(front.take_failures())
        front.stop()
    if failures:
        pytest.fail("harness recorded failures the test did not claim:\n  - " + "\n  - ".join(failures))
