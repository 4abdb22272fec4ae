"""Request facts: what the access phase learned from the client's request, carried to the log phase.

:class:`RequestFacts` travels from the access phase (``.prepare.prepare_request``
makes it) to the log phase through ``kong.log.set_serialize_value``, as the small
dict :meth:`RequestFacts.to_wire` makes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_BODY_BYTES = 10_485_760
_WIRE_VERSION = 1
_MAX_WIRE_STR = 512


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the client's request said that the response will not.

    Parameters: ``provider`` / ``api_family`` (see :mod:`.detect`, ``""`` when
    unknown), ``requested_model`` (body ``model``, else the URL's),
    ``streaming``, ``client_requested_usage`` (the client itself sent
    ``stream_options.include_usage: true``), ``usage_injected`` (we added it),
    ``estimated_prompt_tokens`` (only when estimation was asked for),
    ``unread_body_bytes`` / ``unread_reason``: the request body was not read
    (its Content-Length, and why: ``body-too-large`` or ``body-spooled``), so
    ``streaming`` was not known in access and the prompt, if estimated, comes
    from the length. ``undecoded_body``: access asked Kong to decode the body
    (``kong.request.get_body``) and got nothing back, which says neither the
    size nor why; the log phase fills both in from ``serialize()``.
    """

    provider: str
    api_family: str
    requested_model: str
    streaming: bool
    client_requested_usage: bool
    usage_injected: bool
    estimated_prompt_tokens: int | None = None
    unread_body_bytes: int | None = None
    unread_reason: str = ""
    undecoded_body: bool = False

    def to_wire(self) -> dict[str, Any]:
        """A small JSON-able dict with short keys (Kong ctx → log phase)."""
        wire: dict[str, Any] = {
            "v": _WIRE_VERSION,
            "p": self.provider,
            "f": self.api_family,
            "m": self.requested_model,
            "s": int(self.streaming),
            "cu": int(self.client_requested_usage),
            "ui": int(self.usage_injected),
        }
        if self.estimated_prompt_tokens is not None:
            wire["ep"] = self.estimated_prompt_tokens
        if self.unread_body_bytes is not None:
            wire["ub"] = self.unread_body_bytes
            wire["ur"] = self.unread_reason
        if self.undecoded_body:
            wire["ud"] = 1
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any] | None) -> RequestFacts | None:
        """The facts back from :meth:`to_wire`'s dict; None for anything that is not one."""
        try:
            if not isinstance(data, Mapping) or "p" not in data or "f" not in data:
                return None
            strs = [data.get(k, "") for k in ("p", "f", "m")]
            if not all(isinstance(s, str) and len(s) <= _MAX_WIRE_STR for s in strs):
                return None
            flags = [data.get(k, 0) for k in ("s", "cu", "ui")]
            if not all(type(f) in (bool, int) and f in (0, 1) for f in flags):
                return None
            ep = data.get("ep")
            if ep is not None and not (type(ep) is int and ep >= 0):
                ep = None
            unread = data.get("ub")
            reason = data.get("ur", "")
            if unread is not None and not (type(unread) is int and unread >= 0 and isinstance(reason, str) and len(reason) <= 64):
                unread, reason = None, ""
            return cls(strs[0], strs[1], strs[2], bool(flags[0]), bool(flags[1]), bool(flags[2]), ep,
                       unread, reason if unread is not None else "", data.get("ud") == 1)  # fmt: skip
        except Exception:  # noqa: BLE001 - contract: never raises on the hot path
            return None
