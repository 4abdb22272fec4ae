"""OpenID Connect sign-in (authorization code flow with PKCE), for companies with an identity provider.

Authlib's httpx client builds the authorization URL (state, nonce, S256 code
challenge) and exchanges the code; the ID token is verified with joserfc
against the provider's published keys (JWKS, from its discovery document):
signature, issuer, audience, expiry, nonce, and a verified email. The email
names the user; the groups claim (settings.console_oidc_groups_claim) maps to
grants through the accounts file's ``groups``.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..settings import AggregatorSettings

DISCOVERY_TTL_S = 3600.0
TIMEOUT_S = 10.0
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class OidcError(Exception):
    """Sign-in cannot complete; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class Identity:
    email: str
    groups: list[str]
    subject: str


class OidcClient:
    def __init__(self, issuer: str, client_id: str, client_secret: str, *, scopes: str, groups_claim: str) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = scopes
        self.groups_claim = groups_claim
        self._lock = threading.Lock()
        self._discovered: tuple[float, dict[str, Any], KeySet] | None = None

    @classmethod
    def from_settings(cls, settings: AggregatorSettings) -> OidcClient:
        if not settings.console_oidc_client_id:
            raise ValueError("CHARGEBACK_CONSOLE_OIDC_ISSUER is set: CHARGEBACK_CONSOLE_OIDC_CLIENT_ID is required too")
        secret = settings.console_oidc_client_secret.get_secret_value() if settings.console_oidc_client_secret else ""
        return cls(settings.console_oidc_issuer, settings.console_oidc_client_id, secret,
                   scopes=settings.console_oidc_scopes, groups_claim=settings.console_oidc_groups_claim)  # fmt: skip

    def _metadata(self, *, refresh: bool = False) -> tuple[dict[str, Any], KeySet]:
        with self._lock:
            if self._discovered and not refresh and time.monotonic() - self._discovered[0] < DISCOVERY_TTL_S:
                return self._discovered[1], self._discovered[2]
            try:
                meta = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=TIMEOUT_S).raise_for_status().json()
                if meta.get("issuer", "").rstrip("/") != self.issuer:
                    raise OidcError(f"discovery names issuer {meta.get('issuer')!r}, expected {self.issuer!r}")
                keys = KeySet.import_key_set(httpx.get(meta["jwks_uri"], timeout=TIMEOUT_S).raise_for_status().json())
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                raise OidcError(f"discovery at {self.issuer} failed: {type(exc).__name__}: {exc}") from None
            self._discovered = (time.monotonic(), meta, keys)
            return meta, keys

    def _session(self, redirect_uri: str) -> OAuth2Client:
        return OAuth2Client(self.client_id, self._client_secret or None, scope=self.scopes, redirect_uri=redirect_uri,
                            code_challenge_method="S256", timeout=TIMEOUT_S,
                            token_endpoint_auth_method="client_secret_basic" if self._client_secret else "none")  # fmt: skip

    def authorization_url(self, redirect_uri: str) -> tuple[str, dict[str, Any]]:
        """Where to send the browser, and what to keep (in a signed cookie) until it comes back."""
        meta, _ = self._metadata()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        with self._session(redirect_uri) as client:
            url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier)
        return url, {"state": state, "nonce": nonce, "verifier": verifier}

    def finish(self, code: str, state: dict[str, Any], redirect_uri: str) -> Identity:
        if not code:
            raise OidcError("no authorization code in the answer")
        meta, keys = self._metadata()
        try:
            with self._session(redirect_uri) as client:
                token = client.fetch_token(meta["token_endpoint"], code=code, code_verifier=state["verifier"])
        except Exception as exc:  # authlib raises several types for a refused exchange
            raise OidcError(f"the code exchange was refused: {type(exc).__name__}: {exc}") from None
        id_token = token.get("id_token")
        if not id_token:
            raise OidcError("the provider sent no ID token")
        claims = self._verify(id_token, keys, state)
        email = str(claims.get("email") or "")
        if not email or claims.get("email_verified") is False:
            raise OidcError("the ID token carries no verified email")
        groups = claims.get(self.groups_claim) or []
        return Identity(email=email, groups=[str(g) for g in groups] if isinstance(groups, list) else [str(groups)],
                        subject=str(claims.get("sub", "")))  # fmt: skip

    def _verify(self, id_token: str, keys: KeySet, state: dict[str, Any]) -> dict[str, Any]:
        try:
            try:
                decoded = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            except JoseError:
                _, keys = self._metadata(refresh=True)  # keys may have rotated
                decoded = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer}, aud={"essential": True, "value": self.client_id},
                exp={"essential": True}, sub={"essential": True}, nonce={"essential": True, "value": state["nonce"]},
            )  # fmt: skip
            registry.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise OidcError(f"the ID token is not valid: {type(exc).__name__}: {exc}") from None
        return dict(decoded.claims)
