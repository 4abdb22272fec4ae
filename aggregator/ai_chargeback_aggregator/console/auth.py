"""Signing in and out: the password form, OpenID Connect, and the cookies and checks they share.

A mixin of the Console (app.py), which provides settings, accounts, sessions,
templates, the OpenID client and href().
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import anyio.from_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from .access import BadRequest, Principal
from .accounts import AccountError, AccountsFile
from .oidc import OidcClient, OidcError
from .sessions import LOGIN_COOKIE, OIDC_COOKIE, SESSION_COOKIE, Session, Sessions

if TYPE_CHECKING:
    from collections.abc import Mapping

    from jinja2 import Environment

    from ..settings import AggregatorSettings

log = logging.getLogger(__name__)
audit = logging.getLogger("ai_chargeback_aggregator.console.audit")
MAX_FORM_BYTES = 16 * 1024
CSP = ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")  # fmt: skip


class SignIn:
    """Routes and checks of signing in; the Console provides what they use."""

    settings: AggregatorSettings
    accounts: AccountsFile
    oidc: OidcClient | None
    templates: Environment

    if TYPE_CHECKING:

        @property
        def sessions(self) -> Sessions: ...

        def principal(self, request: Request) -> tuple[Principal | None, Session | None]: ...

        def href(self, request: Request, name: str, query: Mapping[str, str] | None = None) -> str: ...

    def transport_ok(self, request: Request) -> bool:
        """HTTPS, or plain HTTP from this machine (or the operator accepted plain HTTP)."""
        if request.url.scheme == "https" or self.settings.console_allow_insecure_http:
            return True
        host = request.client.host if request.client else ""
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"

    def cookie_path(self, request: Request) -> str:
        return (request.scope.get("root_path") or "") + "/"

    def set_cookie(self, request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path=self.cookie_path(request), httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")  # fmt: skip

    def clear_cookie(self, request: Request, response: Response, name: str) -> None:
        response.delete_cookie(name, path=self.cookie_path(request), httponly=True, samesite="lax", secure=request.url.scheme == "https")

    def origin_ok(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:  # not sent by every browser on same-origin POSTs; the CSRF token still holds
            return True
        return origin == f"{request.url.scheme}://{request.url.netloc}"

    def signin(self, request: Request) -> Response:
        if request.method == "POST":
            return self._signin_post(request)
        next_path = safe_next(request.query_params.get("next", ""))
        login_id, cookie = self.sessions.new_login()
        response = self._signin_page(request, login_id, next_path, "", 200)
        self.set_cookie(request, response, LOGIN_COOKIE, cookie, None)
        return response

    def _signin_page(self, request: Request, login_id: str, next_path: str, message: str, status: int) -> HTMLResponse:
        html = self.templates.get_template("signin.html").render(
            title="Sign in", principal=None, nav=[], static=self.href(request, "static"), action=self.href(request, "signin"),
            csrf=self.sessions.csrf_token("login:" + login_id), next=next_path, message=message,
            oidc=self.href(request, "oidc_start", {"next": next_path}) if self.oidc else "", transport_ok=self.transport_ok(request),
        )  # fmt: skip
        return HTMLResponse(html, status_code=status, headers=security_headers())

    def _signin_post(self, request: Request) -> Response:
        form = read_form(request)
        login_id = self.sessions.read_login(request.cookies.get(LOGIN_COOKIE))
        next_path = safe_next(form.get("next", ""))
        if not self.origin_ok(request) or not self.sessions.csrf_ok("login:" + login_id if login_id else "", form.get("csrf", "")):
            return PlainTextResponse("sign-in refused: the form expired or did not come from this console; reload it\n", status_code=403)
        if not self.transport_ok(request):
            return self._signin_page(request, login_id, next_path, "Sign-in over plain HTTP is refused: use HTTPS.", 403)
        name, password = form.get("username", "").strip(), form.get("password", "")
        client = "client:" + (request.client.host if request.client else "?")
        if self.sessions.locked_out("user:" + name, client):
            audit.warning("sign-in throttled", extra={"user": name, "client": client})
            return self._signin_page(request, login_id, next_path, "Too many failed sign-ins; wait 15 minutes.", 429)
        try:
            user = self.accounts.current().verify_password(name, password) if name and password else None
        except AccountError as exc:
            log.error("console accounts file unreadable: %s", exc)
            return self._signin_page(request, login_id, next_path, "The accounts file cannot be read; see the aggregator's log.", 503)
        if user is None:
            self.sessions.failed("user:" + name, client)
            audit.warning("sign-in failed", extra={"user": name, "client": client})
            return self._signin_page(request, login_id, next_path, "Wrong name or password.", 401)
        self.sessions.succeeded("user:" + name)
        _, cookie = self.sessions.issue(user.name, "password", stamp=user.stamp())
        audit.info("signed in", extra={"user": user.name, "via": "password", "client": client})
        response = RedirectResponse((request.scope.get("root_path") or "") + (next_path or "/"), status_code=303)
        self.set_cookie(request, response, SESSION_COOKIE, cookie, int(self.sessions.lifetime_s))
        self.clear_cookie(request, response, LOGIN_COOKIE)
        return response

    def signout(self, request: Request) -> Response:
        principal, session = self.principal(request)
        form = read_form(request)
        if session is None:
            return RedirectResponse(self.href(request, "signin"), status_code=303)
        if not self.origin_ok(request) or not self.sessions.csrf_ok(session.sid, form.get("csrf", "")):
            return PlainTextResponse("sign-out refused: missing or wrong CSRF token\n", status_code=403)
        self.sessions.revoke(session)
        audit.info("signed out", extra={"user": session.user})
        response = RedirectResponse(self.href(request, "signin"), status_code=303)
        self.clear_cookie(request, response, SESSION_COOKIE)
        return response

    def oidc_start(self, request: Request) -> Response:
        if self.oidc is None:
            return PlainTextResponse("OpenID Connect sign-in is not configured\n", status_code=404)
        if not self.transport_ok(request):
            return PlainTextResponse("sign-in over plain HTTP is refused: use HTTPS\n", status_code=403)
        redirect_uri = str(request.url_for("oidc_callback"))
        try:
            url, state = self.oidc.authorization_url(redirect_uri)
        except OidcError as exc:
            return PlainTextResponse(f"the identity provider is not reachable: {exc}\n", status_code=502)
        state["next"] = safe_next(request.query_params.get("next", ""))
        response = RedirectResponse(url, status_code=303)
        self.set_cookie(request, response, OIDC_COOKIE, self.sessions.pack_oidc(state), 600)
        return response

    def oidc_callback(self, request: Request) -> Response:
        if self.oidc is None:
            return PlainTextResponse("OpenID Connect sign-in is not configured\n", status_code=404)
        state = self.sessions.unpack_oidc(request.cookies.get(OIDC_COOKIE))
        if state is None or not secrets.compare_digest(str(state.get("state", "")), request.query_params.get("state", "")):
            return PlainTextResponse("sign-in refused: this answer does not belong to a sign-in started here (state)\n", status_code=403)
        if "error" in request.query_params:
            return PlainTextResponse(f"the identity provider refused: {request.query_params['error']}\n", status_code=403)
        try:
            identity = self.oidc.finish(request.query_params.get("code", ""), state, str(request.url_for("oidc_callback")))
        except OidcError as exc:
            audit.warning("sso sign-in failed", extra={"reason": str(exc)})
            return PlainTextResponse(f"sign-in refused: {exc}\n", status_code=403)
        accounts = self.accounts.current()
        grants = accounts.sso_grants(identity.email, identity.groups)
        if grants is None:
            audit.warning("sso sign-in without grants", extra={"user": identity.email})
            return PlainTextResponse(f"{identity.email} signed in, but has no access to this console; ask an admin\n", status_code=403)
        user = accounts.users.get(identity.email)
        _, cookie = self.sessions.issue(identity.email, "sso", stamp=user.stamp() if user else "", groups=tuple(identity.groups))
        audit.info("signed in", extra={"user": identity.email, "via": "sso"})
        response = RedirectResponse((request.scope.get("root_path") or "") + (state.get("next") or "/"), status_code=303)
        self.set_cookie(request, response, SESSION_COOKIE, cookie, int(self.sessions.lifetime_s))
        self.clear_cookie(request, response, OIDC_COOKIE)
        return response



def security_headers() -> dict[str, str]:
    return {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "same-origin",
            "x-frame-options": "DENY", "cache-control": "no-store"}  # fmt: skip


def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (small), each field once."""
    body = anyio.from_thread.run(request.body)
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest("form too large")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if len(v) == 1}


def safe_next(path: str) -> str:
    """A local path to return to after sign-in; anything else (another site, a scheme) is dropped."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or any(ord(c) < 32 for c in path):
        return ""
    return path

