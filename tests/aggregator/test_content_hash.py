"""Content hashes tell a replay from a resend across versions: the batch form admission uses
must give exactly the per-event values, and the values themselves must never change (rows
stored by an older aggregator carry them)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai_chargeback_aggregator.ingest import content
from ai_chargeback_aggregator.ingest.content import UNKNOWN_CONTENT_HASH, content_hash, content_hashes


def test_the_digest_is_pinned() -> None:
    # 64-bit BLAKE2b, little-endian: what every stored row's content_hash was computed with.
    assert content_hash(b"chargeback") == 2245971663321487529
    assert list(content_hashes([b"chargeback", memoryview(b"xchargeback")[1:], b""])) == [
        2245971663321487529, 2245971663321487529, 13020603013274838756]  # fmt: skip


@given(st.lists(st.binary(max_size=600), max_size=40))
def test_the_batch_form_equals_each_event_hashed_alone(payloads: list[bytes]) -> None:
    assert list(content_hashes(payloads)) == [content_hash(p) for p in payloads]


def test_a_zero_digest_becomes_one_in_the_batch_form_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """0 means "stored before content hashes" (a replay of it counts as a duplicate), so no real
    digest may take it. A zero digest has a 2**-64 chance: forced here."""

    class ZeroState:
        def copy(self) -> ZeroState:
            return self

        def update(self, data: Any) -> None:
            pass

        def digest(self) -> bytes:
            return bytes(8)

    monkeypatch.setattr(content, "_EMPTY_DIGEST", ZeroState())
    hashes = content_hashes([b"a", b"b"])
    assert list(hashes) == [1, 1] and UNKNOWN_CONTENT_HASH not in hashes
