"""A real OpenID Connect provider for tests: Authlib's authorization server components on Flask, on a real port.

Authorization code flow with PKCE (S256) and nonces, RS256-signed ID tokens
(keys published at /jwks), discovery at /.well-known/openid-configuration, a
login form at /authorize. Users are ``{email: (password, groups)}``; one client
is registered with the redirect URI the test gives. Nothing in the protocol is
stubbed: the console talks to it as to any identity provider.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

LOGIN_FORM = """<!doctype html><form method="post"><input name="username"><input name="password" type="password">
<button>Sign in</button></form>"""


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in ("openid", "email", "profile", "groups"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic" if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class User:
    id: str
    email: str
    groups: list[str]


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str
    code_challenge: str
    code_challenge_method: str
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return ""

    def get_amr(self) -> list[str]:
        return []

    def is_expired(self) -> bool:
        return time.time() - self.auth_time > 300


class OidcProvider:
    def __init__(self, users: dict[str, tuple[str, list[str]]]) -> None:
        self.users = users
        self.codes: dict[str, Code] = {}
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig", "alg": "RS256"})
        self.client: Client | None = None
        self.token_requests = 0
        app = Flask(__name__)
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        provider = self

        class AuthorizationCode(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                data = req.payload.data
                provider.codes[code] = Code(code, req.client.client_id, data.get("redirect_uri", ""), req.payload.scope,
                                            req.user, data.get("nonce", ""), data.get("code_challenge", ""),
                                            data.get("code_challenge_method", ""))  # fmt: skip

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                found = provider.codes.get(code)
                return found if found and found.client_id == client.client_id and not found.is_expired() else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                provider.codes.pop(authorization_code.code, None)  # a code works once

            def authenticate_user(self, authorization_code: Code) -> User:
                return authorization_code.user

        class IdTokens(OpenIDCode):
            def exists_nonce(self, nonce: str, req: Any) -> bool:
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return provider.key

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                return {"iss": provider.issuer, "aud": [client.client_id]}

            def get_client_algorithm(self, client: Client) -> str:
                return "RS256"

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": "test-key-1"}

            def generate_user_info(self, user: User, scope: str) -> dict[str, Any]:
                return {"sub": user.id, "email": user.email, "email_verified": True, "groups": user.groups}

        def save_token(token: dict[str, Any], req: Any) -> None:
            provider.token_requests += 1

        server = AuthorizationServer(app, query_client=lambda cid: self.client if self.client and cid == self.client.client_id else None,
                                     save_token=save_token)  # fmt: skip
        server.register_grant(AuthorizationCode, [CodeChallenge(required=True), IdTokens(require_nonce=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return jsonify({
                "issuer": provider.issuer, "authorization_endpoint": f"{provider.issuer}/authorize",
                "token_endpoint": f"{provider.issuer}/token", "jwks_uri": f"{provider.issuer}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
            })  # fmt: skip

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify({"keys": [provider.key.as_dict(private=False)]})

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            if request.method == "GET":
                server.get_consent_grant(end_user=None)  # validates the request before showing the form
                return LOGIN_FORM
            email, password = request.form.get("username", ""), request.form.get("password", "")
            known = provider.users.get(email)
            user = User(f"sub-{email}", email, known[1]) if known and secrets.compare_digest(known[0], password) else None
            return server.create_authorization_response(grant_user=user)

        @app.post("/token")
        def token() -> Any:
            return server.create_token_response()

    def register(self, client_id: str, client_secret: str, redirect_uri: str) -> None:
        self.client = Client(client_id, client_secret, redirect_uri)

    def __enter__(self) -> OidcProvider:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
