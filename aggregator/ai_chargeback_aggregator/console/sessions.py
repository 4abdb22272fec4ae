"""Sessions and CSRF: signed, timestamped cookies; a token bound to the session on every form.

The session cookie holds who signed in, how, a random session id and the
user's stamp (accounts.User.stamp), signed with itsdangerous and refused past
its lifetime. It is HttpOnly, SameSite=Lax, scoped to the console's path, and
Secure whenever the request came over HTTPS; plain HTTP is accepted only from
a loopback client unless the operator says otherwise (settings). Signing out
voids the session id in this process at once; changing a password or running
``chargeback console users revoke-sessions`` voids every session of the user
on every aggregator reading the same accounts file.

CSRF: every state change is a POST carrying a token that is an HMAC of the
session id (the sign-in form: of a pre-session cookie's id), checked in
constant time, and its Origin (when the browser sends one) must be ours.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SESSION_COOKIE = "cb_session"
LOGIN_COOKIE = "cb_login"  # pre-session: binds the sign-in form's CSRF token
OIDC_COOKIE = "cb_oidc"  # state, nonce and PKCE verifier of one OpenID Connect sign-in
LOGIN_MAX_AGE_S = 30 * 60
OIDC_MAX_AGE_S = 10 * 60
KEY_BYTES = 32
# Sign-in throttle: this many failures for one name within the window lock it for the window; one client
# address (many people behind one proxy or NAT) gets more before it is locked.
MAX_FAILURES = {"user": 5, "client": 50}
FAILURE_WINDOW_S = 15 * 60


@dataclass(frozen=True)
class Session:
    user: str
    via: str  # password | sso
    sid: str
    stamp: str = ""  # password users: User.stamp() when signed in
    groups: tuple[str, ...] = ()  # sso users: the identity provider's groups
    issued: float = 0.0


def load_or_create_key(secret: str | None, users_path: str | Path) -> bytes:
    """The signing key: the configured secret, else a random key kept beside the accounts file (0600)."""
    if secret:
        return hashlib.sha256(secret.encode()).digest()
    path = Path(users_path).with_name(Path(users_path).name + ".session-key")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = bytes.fromhex(path.read_text().strip())
        if len(key) != KEY_BYTES:
            raise ValueError(f"{path}: expected {KEY_BYTES} hex bytes") from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
    return key


class Sessions:
    def __init__(self, key: bytes, *, lifetime_s: float) -> None:
        self._key = key
        self.lifetime_s = lifetime_s
        self._sessions = URLSafeTimedSerializer(key, salt="chargeback-console-session")
        self._login = URLSafeTimedSerializer(key, salt="chargeback-console-login")
        self._oidc = URLSafeTimedSerializer(key, salt="chargeback-console-oidc")
        self._revoked: dict[str, float] = {}  # sid -> when it would have expired anyway
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    # -- sessions ---------------------------------------------------------
    def issue(self, user: str, via: str, *, stamp: str = "", groups: tuple[str, ...] = ()) -> tuple[Session, str]:
        session = Session(user, via, secrets.token_urlsafe(24), stamp, tuple(groups), time.time())
        payload = {"u": session.user, "v": session.via, "s": session.sid, "st": session.stamp, "g": list(session.groups)}
        return session, self._sessions.dumps(payload)

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None when it is absent, forged, expired or signed out."""
        if not cookie:
            return None
        try:
            payload, issued = self._sessions.loads(cookie, max_age=int(self.lifetime_s), return_timestamp=True)
        except (BadSignature, SignatureExpired):
            return None
        try:
            session = Session(str(payload["u"]), str(payload["v"]), str(payload["s"]), str(payload.get("st", "")),
                              tuple(map(str, payload.get("g") or ())), issued.timestamp())  # fmt: skip
        except (KeyError, TypeError, AttributeError):
            return None
        with self._lock:
            if session.sid in self._revoked:
                return None
        return session

    def revoke(self, session: Session) -> None:
        now = time.time()
        with self._lock:
            self._revoked = {sid: until for sid, until in self._revoked.items() if until > now}
            self._revoked[session.sid] = session.issued + self.lifetime_s

    # -- CSRF -------------------------------------------------------------
    def csrf_token(self, bound_to: str) -> str:
        return hmac.new(self._key, b"csrf:" + bound_to.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, bound_to: str, presented: str) -> bool:
        return bool(bound_to) and hmac.compare_digest(self.csrf_token(bound_to), presented or "")

    def new_login(self) -> tuple[str, str]:
        """(login id, cookie value) for a sign-in form."""
        login_id = secrets.token_urlsafe(18)
        return login_id, self._login.dumps(login_id)

    def read_login(self, cookie: str | None) -> str:
        if not cookie:
            return ""
        try:
            return str(self._login.loads(cookie, max_age=LOGIN_MAX_AGE_S))
        except (BadSignature, SignatureExpired):
            return ""

    # -- OpenID Connect transient state -------------------------------------
    def pack_oidc(self, data: dict[str, Any]) -> str:
        return self._oidc.dumps(data)

    def unpack_oidc(self, cookie: str | None) -> dict[str, Any] | None:
        if not cookie:
            return None
        try:
            data = self._oidc.loads(cookie, max_age=OIDC_MAX_AGE_S)
        except (BadSignature, SignatureExpired):
            return None
        return data if isinstance(data, dict) else None

    # -- sign-in throttle ---------------------------------------------------
    def locked_out(self, *keys: str) -> bool:
        now = time.time()
        with self._lock:
            return any(len([t for t in self._failures.get(k, ()) if t > now - FAILURE_WINDOW_S]) >= MAX_FAILURES[k.split(":", 1)[0]]
                       for k in keys)  # fmt: skip

    def failed(self, *keys: str) -> None:
        now = time.time()
        with self._lock:
            for key in keys:
                self._failures[key] = [t for t in self._failures.get(key, ()) if t > now - FAILURE_WINDOW_S] + [now]

    def succeeded(self, user_key: str) -> None:
        with self._lock:
            self._failures.pop(user_key, None)
