"""OpenID Connect sign-in against a real provider (Authlib's server on Flask, tests/support/oidc_provider.py).

The whole code flow over real sockets: the console's redirect with state,
nonce and PKCE, the provider's login form, the callback, the code exchange and
the ID token check; then grants from the accounts file (a user entry or a
mapped group), and the refusals: no grant, a state from elsewhere, a code used
twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from support.console_site import Running, console_cli, start
from support.oidc_provider import OidcProvider

CLIENT_ID, CLIENT_SECRET = "chargeback-console", "provider-issued-secret"
USERS = {
    "dana@example.com": ("dana-pw", ["finance-team"]),  # finance through a mapped group
    "erin@example.com": ("erin-pw", ["engineering"]),  # a viewer through her own entry
    "fred@example.com": ("fred-pw", ["engineering"]),  # known to the provider, granted nothing here
}


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, OidcProvider]]:
    with OidcProvider(USERS) as provider:
        run = start(tmp_path_factory.mktemp("oidc"), console_oidc_issuer=provider.issuer, console_oidc_client_id=CLIENT_ID,
                    console_oidc_client_secret=CLIENT_SECRET)  # fmt: skip
        try:
            provider.register(CLIENT_ID, CLIENT_SECRET, f"{run.base}/auth/oidc/callback")
            users = run.settings.console_users_path
            assert console_cli(users, "groups", "add", "finance-team", "--role", "finance").returncode == 0
            assert console_cli(users, "users", "add", "erin@example.com", "--role", "viewer", "--team", "payments", "--sso").returncode == 0
            yield run, provider
        finally:
            run.aggregator.stop(grace_s=2)


def start_flow(run: Running, client: httpx.Client) -> httpx.Response:
    """From the console's sign-in link to the provider's login form."""
    signin = client.get("/signin")
    assert "/auth/oidc/start" in signin.text
    to_provider = client.get("/auth/oidc/start", params={"next": "/budgets"})
    assert to_provider.status_code == 303
    location = to_provider.headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"] and query["client_id"] == [CLIENT_ID]
    return client.get(location)


def log_in_at_provider(client: httpx.Client, form: httpx.Response, email: str, password: str) -> httpx.Response:
    assert form.status_code == 200 and "<form" in form.text, form.text
    back = client.post(str(form.url), data={"username": email, "password": password})
    assert back.status_code == 302, back.text
    return back


def test_a_mapped_group_signs_in_as_finance(sso: tuple[Running, OidcProvider]) -> None:
    run, _ = sso
    client = run.client()
    back = log_in_at_provider(client, start_flow(run, client), "dana@example.com", "dana-pw")
    callback = client.get(back.headers["location"])
    assert callback.status_code == 303 and callback.headers["location"] == "/budgets"
    page = client.get("/", params=run.period)
    assert page.status_code == 200 and 'data-user="dana@example.com"' in page.text and 'data-role="finance"' in page.text
    # The code is spent: the same answer played again is refused.
    again = run.client()
    again.cookies.update(client.cookies)
    assert again.get(back.headers["location"]).status_code == 403


def test_a_user_entry_signs_in_as_a_viewer_of_their_team(sso: tuple[Running, OidcProvider]) -> None:
    run, _ = sso
    client = run.client()
    back = log_in_at_provider(client, start_flow(run, client), "erin@example.com", "erin-pw")
    assert client.get(back.headers["location"]).status_code == 303
    assert client.get("/team", params={**run.period, "team": "payments"}).status_code == 200
    assert client.get("/team", params={**run.period, "team": "search"}).status_code == 403


def test_refusals(sso: tuple[Running, OidcProvider]) -> None:
    run, provider = sso
    # Known to the provider, granted nothing by the console.
    client = run.client()
    back = log_in_at_provider(client, start_flow(run, client), "fred@example.com", "fred-pw")
    refused = client.get(back.headers["location"])
    assert refused.status_code == 403 and "no access" in refused.text
    assert client.get("/").status_code == 303
    # An answer for a sign-in this browser never started (no state cookie) or with another state.
    client = run.client()
    back = log_in_at_provider(client, start_flow(run, client), "dana@example.com", "dana-pw")
    stranger = run.client()
    assert stranger.get(back.headers["location"]).status_code == 403
    tampered = back.headers["location"].replace("state=", "state=x")
    assert client.get(tampered).status_code == 403
    # A wrong password at the provider never reaches the console with a code.
    client = run.client()
    form = start_flow(run, client)
    denied = client.post(str(form.url), data={"username": "dana@example.com", "password": "nope"})
    assert "code=" not in denied.headers.get("location", "")
