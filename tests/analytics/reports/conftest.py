from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.seed import Seed, seeded_store


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[Seed]:
    """A fresh embedded store in this test's own directory, with the ingest path wired."""
    with seeded_store(tmp_path) as s:
        yield s
