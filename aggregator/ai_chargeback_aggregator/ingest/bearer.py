"""The bearer token every gateway presents, checked the same way on every gRPC service."""

from __future__ import annotations

import hmac

import grpc

from .. import metrics


async def require_bearer(context: grpc.aio.ServicerContext, token: bytes | None) -> None:
    """Abort the call UNAUTHENTICATED unless it carries ``Bearer <token>`` (no token configured: open)."""
    if token is None:
        return
    presented = b""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            presented = value[len("Bearer ") :].encode()
    if not hmac.compare_digest(presented, token):
        metrics.AUTH_FAILURES.inc()
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
