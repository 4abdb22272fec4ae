"""Fixtures of the console tests: a running aggregator per module (support/console_site.py) and headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.console_site import ARTIFACTS, FLAGS, Running, chromium_binary, start


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    run = start(tmp_path_factory.mktemp("console"))
    run.aggregator.console.analyses.wait_s = 120  # tests read verdicts, never a "being computed" placeholder
    run.aggregator.console.analyses.side_wait_s = 120  # nor a recount or a statement's raw facts still being computed
    try:
        yield run
    finally:
        run.aggregator.stop(grace_s=2)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it in CI)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev dependency) is not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        # A persistent context is the one way to hand Chromium a fresh --user-data-dir of our own.
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=binary, headless=True, args=FLAGS, accept_downloads=True,
            viewport={"width": 1300, "height": 900}, downloads_path=str(tmp_path_factory.mktemp("downloads")),
        )  # fmt: skip
        context.set_default_timeout(120_000)  # a guard against hangs on a loaded machine, not a timing
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    browser.clear_cookies()
    tab = browser.new_page()
    try:
        yield tab
    finally:
        tab.close()


