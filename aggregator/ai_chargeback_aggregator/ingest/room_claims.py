"""Room that streams found for their next batch and have not filled yet.

A stream reads its next batch only once a batch as large as its last would fit in the
writer (``service._room_for``). When one flush frees room, every waiting stream sees the
same room at once; without a record of who is about to fill it, all of them read, and all
but one hold their admitted batch beyond the caps (~15 MB at the 1M-event burst's peak, 8
streams). A claim counts against the room others see until its stream's batch arrives, or
until ``ttl_s`` passes: an idle stream (a gateway with nothing to send) must not hold room
it is not using. All on the event loop, so no lock.
"""

from __future__ import annotations

from collections import deque

CLAIM_TTL_S = 0.25


class RoomClaims:
    def __init__(self, ttl_s: float = CLAIM_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._live: dict[object, tuple[int, int, int]] = {}  # stream -> (claim number, events, bytes)
        self._expiry: deque[tuple[float, object, int]] = deque()  # (when, stream, claim number), oldest first
        self._next = 0
        self.events = 0
        self.nbytes = 0

    def claim(self, stream: object, events: int, nbytes: int, now: float) -> None:
        self.release(stream)
        self._next += 1
        self._live[stream] = (self._next, events, nbytes)
        self._expiry.append((now + self._ttl_s, stream, self._next))
        self.events += events
        self.nbytes += nbytes

    def release(self, stream: object) -> None:
        claim = self._live.pop(stream, None)
        if claim is not None:
            self.events -= claim[1]
            self.nbytes -= claim[2]

    def expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, stream, number = self._expiry.popleft()
            claim = self._live.get(stream)
            if claim is not None and claim[0] == number:
                self.release(stream)
