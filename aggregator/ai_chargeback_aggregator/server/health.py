"""Readiness: may a balancer send this aggregator traffic? Small functions the server calls.

Ready means the store answers and the last write to it succeeded. While writes
fail (a full disk, a store that refuses inserts) the writer says so at once,
and keeps probing until a write succeeds again, so readiness and gRPC health
come back by themselves when space or the store does.
"""

from __future__ import annotations

from typing import Protocol

from grpc_health.v1 import health_pb2


class WriterState(Protocol):
    @property
    def healthy(self) -> bool: ...

    @property
    def health_reason(self) -> str: ...


def readiness(store_reachable: bool, store_reason: str, writer: WriterState) -> tuple[bool, dict[str, str]]:
    """(ready, checks) for /readyz; reasons never name the store's location or credentials."""
    if not store_reachable:
        return False, {"store": store_reason}
    if not writer.healthy:
        return False, {"store": writer.health_reason}
    return True, {"store": "ok"}


def serving_status(ready: bool) -> int:
    return health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
