"""A real gRPC UsageIngest endpoint that keeps every event it receives, for tests of the plugin's output.

It speaks the wire contract exactly (one ack per batch, STORED, deduplicated by
event id the way the aggregator counts), but stores nothing: tests read
`events` to see what the plugin metered. End-to-end tests use the real aggregator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc

from ai_chargeback_proto import pb, pb_grpc


class EventSink(pb_grpc.UsageIngestServicer):
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._events: dict[str, pb.UsageEvent] = {}
        self.deliveries = 0  # events received, duplicates included
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_UsageIngestServicer_to_server(self, self._server)
        # Port 0: the kernel picks a port and gRPC holds it from here on. A port from free_port()
        # is free again until gRPC binds it, and gRPC binds with SO_REUSEPORT, so another gRPC
        # server on the machine that took it meanwhile would silently share its connections.
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    def StreamUsage(self, request_iterator: Iterator[pb.UsageBatch], context: grpc.ServicerContext) -> Iterator[pb.BatchAck]:  # noqa: N802
        for batch in request_iterator:
            new = duplicate = 0
            with self._lock:
                for event in batch.events:
                    self.deliveries += 1
                    if event.event_id in self._events:
                        duplicate += 1
                    else:
                        self._events[event.event_id] = event
                        new += 1
                self._lock.notify_all()
            yield pb.BatchAck(batch_id=batch.batch_id, sequence=batch.sequence, status=pb.BatchAck.STATUS_STORED,
                              events_stored=new, events_duplicate=duplicate)  # fmt: skip

    @property
    def events(self) -> list[pb.UsageEvent]:
        with self._lock:
            return sorted(self._events.values(), key=lambda e: (e.started_at_unix_ms, e.event_id))

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[pb.UsageEvent]:
        """At least `count` distinct events, or TimeoutError naming how many arrived."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self._events) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._events)} of {count} events arrived")
                self._lock.wait(remaining)
        return self.events

    def start(self) -> EventSink:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=0.5)

    def __enter__(self) -> EventSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
