"""The console behind a real reverse proxy that publishes it under a path prefix, walked in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.console_site import Running, browser_sign_in, shot, start
from support.prefix_proxy import PrefixProxy


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, PrefixProxy]]:
    run = start(tmp_path_factory.mktemp("prefixed"), http_root_path="/chargeback")
    try:
        with PrefixProxy(run.aggregator.http.port, "/chargeback") as proxy:
            yield run, proxy
    finally:
        run.aggregator.stop(grace_s=2)


def test_behind_a_reverse_proxy_with_a_path_prefix(prefixed: tuple[Running, PrefixProxy], page: Any) -> None:
    run, proxy = prefixed
    browser_sign_in(page, proxy.url, "fin")
    assert page.url.startswith(proxy.url + "/")
    cookie = next(c for c in page.context.cookies() if c["name"] == "cb_session")
    assert cookie["path"] == "/chargeback/"
    page.goto(f"{proxy.url}/?from={run.first}&to={run.last}")
    page.locator("[data-table=teams] tbody tr[data-key=payments] td[data-col=label] a").click()
    page.wait_for_selector("[data-field=team]")
    assert page.url.startswith(proxy.url + "/team?")
    page.get_by_role("link", name="Governance").click()
    assert page.url.startswith(proxy.url + "/governance")
    hrefs = page.eval_on_selector_all("a[href^='/'], form[action^='/'], link[href^='/']",
                                      "els => els.map(e => e.getAttribute('href') || e.getAttribute('action'))")  # fmt: skip
    assert hrefs and all(h.startswith("/chargeback/") for h in hrefs), hrefs
    styled = page.evaluate("getComputedStyle(document.querySelector('header.top')).backgroundColor")
    assert styled == "rgb(15, 23, 42)"  # the stylesheet came through the prefix
    page.get_by_role("button", name="Sign out").click()
    assert page.url.startswith(proxy.url + "/signin")
    shot(page, "prefixed-signed-out")
