from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.seed import Seed, seeded_store
from support.webhook_receiver import WebhookReceiver


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[Seed]:
    with seeded_store(tmp_path) as s:
        yield s


@pytest.fixture
def webhooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver
