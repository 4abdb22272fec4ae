"""A stand-in for Kong's PDK that records each call in order and answers from a table.

For tests of which PDK calls a handler makes, and in what order; what Kong answers, and
how it fails, is the Kong harness's part (tests/kong_harness), where the real plugin
server runs the same handlers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecordingKong:
    """``kong.a.b(*args)`` records ``("kong.a.b", args)`` and returns ``answers.get("kong.a.b")``."""

    answers: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return _Call(self, f"kong.{name}")

    @property
    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]


@dataclass
class _Call:
    kong: RecordingKong
    path: str

    def __getattr__(self, name: str) -> Any:
        return _Call(self.kong, f"{self.path}.{name}")

    def __call__(self, *args: Any) -> Any:
        self.kong.calls.append((self.path, args))
        return self.kong.answers.get(self.path)
