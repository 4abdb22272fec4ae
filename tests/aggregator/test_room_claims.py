"""Room claims: what a stream about to read counts against the room the others see."""

from __future__ import annotations

from ai_chargeback_aggregator.ingest.room_claims import RoomClaims


def totals(claims: RoomClaims) -> tuple[int, int]:
    return claims.events, claims.nbytes


def test_a_claim_counts_until_its_stream_releases_it() -> None:
    claims = RoomClaims(ttl_s=1.0)
    a, b = object(), object()
    claims.claim(a, 40, 4000, now=0.0)
    claims.claim(b, 10, 1000, now=0.0)
    assert totals(claims) == (50, 5000)
    claims.release(a)
    assert totals(claims) == (10, 1000)
    claims.release(a)  # twice: nothing more
    assert totals(claims) == (10, 1000)


def test_a_claim_expires_so_an_idle_stream_holds_no_room() -> None:
    claims = RoomClaims(ttl_s=1.0)
    idle = object()
    claims.claim(idle, 40, 4000, now=0.0)
    claims.expire(0.99)
    assert totals(claims) == (40, 4000)
    claims.expire(1.0)
    assert totals(claims) == (0, 0)


def test_a_new_claim_replaces_the_streams_last_and_outlives_its_expiry() -> None:
    claims = RoomClaims(ttl_s=1.0)
    stream = object()
    claims.claim(stream, 40, 4000, now=0.0)
    claims.claim(stream, 20, 2000, now=0.5)  # (released in between, as the reader does; or not)
    assert totals(claims) == (20, 2000)
    claims.expire(1.2)  # the first claim's expiry must not drop the second
    assert totals(claims) == (20, 2000)
    claims.expire(1.5)
    assert totals(claims) == (0, 0)


def test_many_streams_claim_and_release_in_any_order() -> None:
    claims = RoomClaims(ttl_s=1.0)
    streams = [object() for _ in range(1000)]
    for i, stream in enumerate(streams):
        claims.claim(stream, 1, 100, now=i / 1000)
    for stream in streams[::2]:
        claims.release(stream)
    assert totals(claims) == (500, 50_000)
    claims.expire(10.0)
    assert totals(claims) == (0, 0)
